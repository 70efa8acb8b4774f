"""Reads of instances and the socket-wide status."""
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from sockets.models import Resolution, Socket
from sockets.selectors import energy_rollup_list, energy_sample_latest, energy_sample_list, power_period_list, retention_cutoff

from .exceptions import InstanceNotFound
from .models import Callback, Instance, StopReason


INSTANCE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # what new_instance_id() makes, within the column


def instance_id_check(*, instance_id: str) -> str:
    """`instance_id` if an id can be that text. Raises InstanceNotFound (e.g. for a NUL byte)."""
    if not INSTANCE_ID.fullmatch(instance_id):
        raise InstanceNotFound(f"no instance {instance_id[:64]!r}", instanceId=instance_id[:64])
    return instance_id


def instance_get(*, instance_id: str) -> Instance:
    """A visible (not deleted) instance. Raises InstanceNotFound (also for text no id can be, e.g. a NUL byte)."""
    instance_id_check(instance_id=instance_id)
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


def socket_must_be_off(*, socket: Socket, running: list[Instance]) -> bool:
    """Nobody holds the socket, or it is emergency-locked: its relay must be OFF (Python form of the rule)."""
    return socket.is_emergency_stopped or not running


def socket_list_must_be_off() -> QuerySet[Socket]:
    """Sockets nobody holds or that are emergency-locked (SQL form of socket_must_be_off)."""
    running = Instance.objects.filter(socket=OuterRef("pk"), stopped_at=None)
    return Socket.objects.filter(Q(is_emergency_stopped=True) | ~Exists(running))


def failsafe_target(*, running: list[Instance]) -> datetime | None:
    """When the plug's own off-timer must end for these holders: the latest deadline + SMARTSOCKET_FAILSAFE_MARGIN.

    None (no timer) when nobody holds it or any holder has no deadline: a timer must never cut a holder short.
    """
    if not running or any(instance.deadline_at is None for instance in running):
        return None
    return max(instance.deadline_at for instance in running) + timedelta(seconds=settings.SMARTSOCKET_FAILSAFE_MARGIN)


def instance_list_between(*, socket: Socket | None, since: datetime | None, until: datetime | None) -> QuerySet[Instance]:
    """Instances (deleted ones too) that ran at some time in [since, until], oldest first."""
    instances = instance_list(socket=socket, include_deleted=True)
    if since is not None:
        instances = instances.exclude(stopped_at__lt=since)
    if until is not None:
        instances = instances.filter(started_at__lte=until)
    return instances


@dataclass(frozen=True)
class InstanceMeter:
    """What the meter saw while an instance ran: currents (A) and energy consumed (Wh)."""

    currents: list[float]
    energy_consumed_wh: float | None  # the instance's share (instances.services.energy)
    socket_energy_wh: float | None = None  # what the plug counted over its run, shared or not


def instance_meter(*, instance: Instance) -> InstanceMeter:
    """The meter readings of the instance's socket while it ran: the currents of its raw samples, after the
    minutes (their highest current) where the retention folded them into rollups."""
    until = instance.stopped_at or timezone.now()
    currents = []
    if instance.started_at < retention_cutoff():
        rollups = energy_rollup_list(socket=instance.socket, since=instance.started_at, until=until)
        currents = list(rollups.values_list("max_current_a", flat=True))
    samples = energy_sample_list(socket=instance.socket, since=instance.started_at, until=until)
    return instance_meter_of(instance=instance, currents=currents + list(samples.values_list("current_a", flat=True)))


def instance_list_with_meter(*, instances: QuerySet[Instance], values: tuple[str, ...] | None = None) -> Iterator[Instance] | Iterator[dict]:
    """Each instance with its meter readings as `.meter`, in one pass and flat memory, whatever the history size.
    With `values` (field names, as for QuerySet.values()), each is a dict of those instead of a model, its meter
    under "meter": no model is built (the download).

    Cursors in the same order: the instances, and (instance id, current) rows from a join of each
    instance with its socket's samples in [start, stop or now] — and, for runs older than the
    retention, with the minute rollups its samples were folded into. Instances created after
    `now` are left out of all, so the streams stay aligned.
    """
    now = timezone.now()
    instances = instances.select_related("socket").filter(started_at__lte=now).order_by("started_at", "pk")
    # Both conditions in one filter() apply to the same joined row.
    samples = instances.filter(
        socket__samples__taken_at__gte=F("started_at"),
        socket__samples__taken_at__lte=Coalesce("stopped_at", Value(now)),
    ).order_by("started_at", "pk", "socket__samples__taken_at", "socket__samples__pk").values_list("pk", "socket__samples__current_a")
    cutoff = retention_cutoff(now=now)
    rollups = instances.filter(started_at__lt=cutoff).filter(
        socket__rollups__resolution=Resolution.MINUTE,
        socket__rollups__bucket_start__gt=F("started_at") - timedelta(minutes=1),
        socket__rollups__bucket_start__lte=Coalesce("stopped_at", Value(now)),
    ).order_by("started_at", "pk", "socket__rollups__bucket_start").values_list("pk", "socket__rollups__max_current_a")
    rollup_stream, sample_stream = _Stream(rows=rollups), _Stream(rows=samples)
    if values is None:
        for instance in instances.iterator(chunk_size=200):
            old = rollup_stream.take(pk=instance.pk) if instance.started_at < cutoff else []  # no query while none is that old
            instance.meter = instance_meter_of(instance=instance, currents=old + sample_stream.take(pk=instance.pk))
            yield instance
        return
    for row in instances.values(*{*values, "pk", "started_at", "energy_consumed_wh", "socket_energy_wh"}).iterator(chunk_size=2000):
        pk = row["pk"]
        old = rollup_stream.take(pk=pk) if row["started_at"] < cutoff else []
        row["meter"] = _meter(currents=old + sample_stream.take(pk=pk), energy_consumed_wh=row["energy_consumed_wh"], socket_energy_wh=row["socket_energy_wh"])
        yield row


class _Stream:
    """(instance id, value) rows in instance order, taken instance by instance; queried on the first take."""

    def __init__(self, *, rows: QuerySet):
        self._query, self._rows, self._pending = rows, None, None

    def take(self, *, pk: str) -> list:
        if self._rows is None:
            self._rows = self._query.iterator(chunk_size=2000)
            self._pending = next(self._rows, None)
        values = []
        while self._pending is not None and self._pending[0] == pk:
            values.append(self._pending[1])
            self._pending = next(self._rows, None)
        return values


def instance_meter_of(*, instance: Instance, currents: list[float]) -> InstanceMeter:
    """The instance's share of the energy counted so far and the plug's whole figure (instances.services.energy), to the mWh."""
    return _meter(currents=currents, energy_consumed_wh=instance.energy_consumed_wh, socket_energy_wh=instance.socket_energy_wh)


def _meter(*, currents: list[float], energy_consumed_wh: float | None, socket_energy_wh: float | None) -> InstanceMeter:
    def rounded(wh: float | None) -> float | None:
        return None if wh is None else round(wh, 3)

    return InstanceMeter(currents=currents, energy_consumed_wh=rounded(energy_consumed_wh), socket_energy_wh=rounded(socket_energy_wh))


def dashboard_sockets(*, sparkline: int = 24) -> list[dict]:
    """Every socket as the operator's dashboard shows it: relay, online, lock, power with its recent
    readings, holders with their deadlines (two queries per socket; the dashboard polls every 2 s)."""
    cards = []
    for socket in Socket.objects.order_by("name"):
        readings = list(energy_sample_list(socket=socket).order_by("-taken_at", "-pk").values_list("taken_at", "power_w")[:sparkline])[::-1]
        holders = instance_list_running(socket=socket).values("id", "client_label", "started_at", "deadline_at")
        cards.append({
            "name": socket.name, "relay": socket.observed_power, "desired": socket.desired_power, "online": socket.is_online,
            "emergencyStopped": socket.is_emergency_stopped, "emergencyStoppedBy": socket.emergency_stopped_by,
            "lastError": socket.last_error, "failsafeExpiresAt": socket.failsafe_expires_at,
            "powerW": readings[-1][1] if readings else None, "sparkline": [watts for _, watts in readings],
            "holders": [{"id": h["id"], "label": h["client_label"], "startedAt": h["started_at"], "deadline": h["deadline_at"]} for h in holders],
        })
    return cards


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
    """Running instances whose deadline has passed and that no worker is stopping (scans running_deadline_idx)."""
    unclaimed = Q(stop_claimed_until=None) | Q(stop_claimed_until__lt=now)
    return Instance.objects.filter(stopped_at=None, deadline_at__lte=now).filter(unclaimed).order_by("deadline_at")


def socket_list_watch_due(*, now: datetime) -> QuerySet[Socket]:
    """Sockets that must be OFF whose relay check is due (the must-be-OFF watch).

    Not those marked offline: their relay is UNKNOWN, so reconcile (backing off at most 2 s)
    is already retrying them, and a dead plug must not tie up the safety lane twice.
    """
    return socket_list_must_be_off().filter(is_online=True).filter(Q(watch_next_at=None) | Q(watch_next_at__lte=now))


def callback_list_due(*, now: datetime) -> QuerySet[Callback]:
    """Pending callbacks whose next attempt is due (scans pending_callback_idx)."""
    pending = Callback.objects.filter(delivered_at=None, failed_at=None, due_at__lte=now)
    return pending.filter(Q(next_attempt_at=None) | Q(next_attempt_at__lte=now)).order_by("due_at")
