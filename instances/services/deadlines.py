"""Deadlines: lease renewal and the stop the service decides when a holder vanishes."""
import logging
from datetime import timedelta

from audit.actors import Actor
from audit.ledger import ledger_atomic, ledger_record
from audit.models import EventKind
from django.utils import timezone

from sockets.exceptions import InvalidParameter
from sockets.services import socket_arm_failsafe, socket_lock, socket_set_failsafe_target

from ..exceptions import InstanceNotRunning
from ..models import Instance, StopReason
from ..selectors import failsafe_target, instance_get, instance_list_running
from .holders import StopResult, instance_schedule_deadline, instance_stop_unattended

logger = logging.getLogger(__name__)


def instance_renew(*, instance_id: str, timeout_ms: int | None = None, actor: Actor | None = None) -> Instance:
    """Push a running instance's deadline out to now + its emergencyStopTimeout (or the new one given).

    The plug's own off-timer moves with the deadline; when the plug refuses that, nothing is
    renewed (SocketDeviceError): the old deadline and timer stand. Raises InstanceNotFound,
    InstanceNotRunning (its deadline or a stop came first), InvalidParameter (no emergencyStopTimeout to renew).
    """
    instance = instance_get(instance_id=instance_id)
    with ledger_atomic():
        socket = socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance.pk)
        if not instance.is_running:
            raise InstanceNotRunning(instanceId=instance.pk, stopReason=instance.stop_reason)
        timeout_ms = timeout_ms or instance.emergency_stop_timeout_ms
        if timeout_ms is None:
            raise InvalidParameter("the instance has no emergencyStopTimeout; give one to renew", instanceId=instance.pk)
        instance.emergency_stop_timeout_ms = timeout_ms
        instance.deadline_at = timezone.now() + timedelta(milliseconds=timeout_ms)
        instance.save(update_fields=["emergency_stop_timeout_ms", "deadline_at"])
        instance_schedule_deadline(instance=instance)
        socket_set_failsafe_target(socket=socket, until=failsafe_target(running=list(instance_list_running(socket=socket))))
        socket_arm_failsafe(socket=socket)  # the plug's own timer moves with the deadline; a refusal fails the renewal
        ledger_record(kind=EventKind.INSTANCE_RENEW, socket_id=socket.pk, instance_id=instance.pk, actor=actor,
                      data={"emergencyStopTimeout": timeout_ms, "deadline": instance.deadline_at})
    logger.info("renew: socket=%s instance=%s deadline=%s", socket.name, instance.pk, instance.deadline_at.isoformat())
    return instance


def instance_stop_timeout(*, instance_id: str) -> StopResult | None:
    """Stop an instance whose deadline has passed; None if it is not due, not running or claimed.

    The reason is timeout — or max_on for a holder without an emergencyStopTimeout, whose
    deadline is the socket's ceiling. Safe to run twice: the deadline is re-checked under the
    socket lock. The decision is committed even when the device fails (instance stopped,
    desired OFF by `<timeout>`) and reconcile completes the power-off.
    """
    timeout_ms = Instance.objects.filter(pk=instance_id).values_list("emergency_stop_timeout_ms", flat=True).first()
    return instance_stop_unattended(
        instance_id=instance_id, reason=StopReason.TIMEOUT if timeout_ms is not None else StopReason.MAX_ON,
        due=lambda instance: instance.deadline_at is not None and instance.deadline_at <= timezone.now(),
    )
