"""Reads of instances and the socket-wide status."""
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from sockets.models import Socket
from sockets.selectors import energy_sample_latest, energy_sample_list, power_period_list

from .exceptions import InstanceNotFound
from .models import Callback, Instance, StopReason


def instance_get(*, instance_id: str) -> Instance:
    """A visible (not deleted) instance. Raises InstanceNotFound."""
    try:
        return Instance.objects.select_related("socket").get(pk=instance_id, deleted_at=None)
    except Instance.DoesNotExist:
        raise InstanceNotFound(f"no instance {instance_id!r}", instanceId=instance_id) from None


def instance_list(*, socket: Socket | None = None, include_deleted: bool = False) -> QuerySet[Instance]:
    instances = Instance.objects.select_related("socket").order_by("started_at", "pk")
    if socket is not None:
        instances = instances.filter(socket=socket)
    if not include_deleted:
        instances = instances.filter(deleted_at=None)
    return instances


def instance_list_running(*, socket: Socket) -> QuerySet[Instance]:
    return Instance.objects.filter(socket=socket, stopped_at=None).order_by("started_at", "pk")


def instance_currents(*, instance: Instance) -> list[float]:
    """The currents (A) sampled on the instance's socket while it ran (`amperagePerSecond`)."""
    samples = energy_sample_list(socket=instance.socket, since=instance.started_at, until=instance.stopped_at or timezone.now())
    return list(samples.values_list("current_a", flat=True))


def server_status(*, socket: Socket) -> dict:
    """The seed's `serverData` for one socket, plus the live facts the database holds."""
    latest = energy_sample_latest(socket=socket)
    first = energy_sample_list(socket=socket).first()
    last_timeout = (
        Instance.objects.filter(socket=socket, stop_reason=StopReason.TIMEOUT).order_by("-stopped_at").values_list("pk", flat=True).first()
    )
    periods = list(power_period_list(socket=socket).order_by("-power_on_at", "-pk")[:100])[::-1]
    return {
        "socket": socket.name,
        "isEmergencyStopped": socket.is_emergency_stopped,
        "energyToday": latest.today_kwh if latest else None,
        "initialEnergy": first.total_kwh if first else None,
        "runningInstances": list(instance_list_running(socket=socket).values_list("pk", flat=True)),
        # Stops run under the socket lock and commit at once, so none is ever seen half-done.
        "instancesStopping": [],
        "latestEmergencyStopTimeoutInstanceId": last_timeout,
        "powerStatus": [
            {
                "powerOn": {"instanceId": p.power_on_by, "timestamp": p.power_on_at},
                "powerOff": {"instanceId": p.power_off_by, "timestamp": p.power_off_at} if p.power_off_at else None,
            }
            for p in periods
        ],
        "power": socket.observed_power,
        "powerW": latest.power_w if latest else None,
        "isOnline": socket.is_online,
        "lastSeenAt": socket.last_seen_at,
        "currentTimestamp": timezone.now(),
    }


def instance_list_overdue(*, now: datetime) -> QuerySet[Instance]:
    """Running instances whose deadline has passed (scans running_deadline_idx)."""
    return Instance.objects.filter(stopped_at=None, deadline_at__lte=now).order_by("deadline_at")


def callback_list_due(*, now: datetime) -> QuerySet[Callback]:
    """Pending callbacks whose next attempt is due (scans pending_callback_idx)."""
    pending = Callback.objects.filter(delivered_at=None, failed_at=None, due_at__lte=now)
    return pending.filter(Q(next_attempt_at=None) | Q(next_attempt_at__lte=now)).order_by("due_at")
