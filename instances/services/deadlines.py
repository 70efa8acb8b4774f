"""Deadlines: lease renewal and the stops the service decides when a holder vanishes."""
import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from sockets.exceptions import (
    InvalidParameter,
    SocketDeviceError,
    SocketPowerFailed,
)
from sockets.models import Socket
from sockets.services import (
    socket_lock,
    socket_probe,
    socket_record_fault,
    socket_set_desired,
)

from ..exceptions import InstanceNotRunning
from ..models import Instance, StopReason
from ..selectors import instance_get, instance_list_overdue, instance_list_running
from .holders import (
    StopResult,
    instance_finish,
    instance_mark_stopped,
    instance_schedule_deadline,
    power_off_by,
)

logger = logging.getLogger(__name__)


def instance_renew(*, instance_id: str, timeout_ms: int | None = None) -> Instance:
    """Push a running instance's deadline out to now + its emergencyStopTimeout (or the new one given).

    Raises InstanceNotFound, InstanceNotRunning (its deadline or a stop came first),
    InvalidParameter (no emergencyStopTimeout to renew).
    """
    instance = instance_get(instance_id=instance_id)
    with transaction.atomic():
        socket_lock(socket_id=instance.socket_id)
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
    return instance


def instance_stop_timeout(*, instance_id: str) -> StopResult | None:
    """Stop an instance whose deadline has passed (reason timeout); None if it is not due or not running.

    Safe to run twice: the deadline is re-checked under the socket lock. Like an emergency
    stop, the decision is committed even when the device fails (instance stopped, desired
    OFF by `<timeout>`) and reconcile completes the power-off.
    """
    return instance_stop_decided(
        instance_id=instance_id, reason=StopReason.TIMEOUT,
        due=lambda instance: instance.deadline_at is not None and instance.deadline_at <= timezone.now(),
    )


def instance_stop_overdue() -> list[str]:
    """Stop every running instance whose deadline has passed (the beat sweep); returns their ids."""
    overdue = list(instance_list_overdue(now=timezone.now()).values_list("pk", flat=True))
    return [instance_id for instance_id in overdue if instance_stop_timeout(instance_id=instance_id) is not None]


def instance_stop_decided(*, instance_id: str, reason: str, due=None) -> StopResult | None:
    """A stop the service decided on its own: committed even if the device fails, which is then recorded.

    The device is probed first, without the lock: one that does not answer is not waited
    for under the lock (the stop only records the desired OFF; reconcile switches it later).
    None when the instance is gone, no longer running, or `due(instance)` is false under the lock.
    """
    instance = Instance.objects.select_related("socket").filter(pk=instance_id).first()
    if instance is None or not instance.is_running:
        return None
    reachable = socket_probe(socket=instance.socket)
    device_error = None if reachable else SocketDeviceError(f"{instance.socket.name}: not answering", socket=instance.socket.name)
    with transaction.atomic():
        socket = socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance_id)
        if not instance.is_running or (due is not None and not due(instance)):
            return None
        if reachable:
            try:
                triggered = instance_finish(socket=socket, instance=instance, reason=reason)
            except (SocketDeviceError, SocketPowerFailed) as exc:
                device_error = exc
        if device_error is not None:
            triggered = _instance_finish_without_device(socket=socket, instance=instance, reason=reason)
    if device_error is not None:
        socket_record_fault(socket_id=socket.pk, error=device_error)
        logger.warning("%s stop of %s committed; the device failed, reconcile takes over: %s", reason, instance_id, device_error)
    return StopResult(instance=instance, triggered_power_off=triggered)


def _instance_finish_without_device(*, socket: Socket, instance: Instance, reason: str) -> bool:
    """Stop a running instance under the socket lock; the last holder leaves OFF as reconcile's target."""
    last = not instance_list_running(socket=socket).exclude(pk=instance.pk).exists()
    if last:
        socket_set_desired(socket=socket, on=False, by=power_off_by(instance=instance, reason=reason), cause=reason)
        instance.triggered_power_off = True
    instance_mark_stopped(instance=instance, reason=reason, at=timezone.now())
    return last
