"""Starting and stopping holders of a socket: start, stop, delete, emergency stop, recover."""
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from sockets.drivers import EnergyReading
from sockets.exceptions import (
    SocketDeviceError,
    SocketEmergencyStopped,
    SocketPowerFailed,
)
from sockets.models import PowerCause, Socket
from sockets.selectors import energy_sample_latest, power_period_get_open
from sockets.services import (
    energy_sample_record,
    socket_device_faults,
    socket_lock,
    socket_power_off,
    socket_power_on,
    socket_read_energy,
    socket_set_emergency,
)

from ..models import Instance, StopReason
from ..selectors import instance_get, instance_list_running


@dataclass(frozen=True)
class StartResult:
    instance: Instance
    triggered_power_on: bool


@dataclass(frozen=True)
class StopResult:
    instance: Instance
    triggered_power_off: bool


@dataclass(frozen=True)
class EmergencyResult:
    socket: Socket
    stopped_instances: list[str] = field(default_factory=list)


def instance_start(*, socket: Socket, timeout_ms: int | None = None, client: dict[str, str] | None = None) -> StartResult:
    """Start an instance on `socket`, powering it on if nothing else holds it.

    Holds the socket lock across the device commands, so starts, stops and monitoring are
    serialized per socket; the driver timeout bounds the wait. Nothing is written when the
    device fails. Raises SocketEmergencyStopped, SocketDeviceError, SocketPowerFailed.
    """
    with socket_device_faults(socket=socket), transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        if socket.is_emergency_stopped:
            raise SocketEmergencyStopped(socket=socket.name)
        reading = socket_read_energy(socket=socket)
        energy_sample_record(socket=socket, reading=reading)
        now = timezone.now()
        instance = Instance(
            socket=socket,
            started_at=now,
            emergency_stop_timeout_ms=timeout_ms,
            deadline_at=now + timedelta(milliseconds=timeout_ms) if timeout_ms is not None else None,
            energy_at_start=_energy_snapshot(reading),
            **{f"client_{key}": value for key, value in (client or {}).items()},
        )
        triggered = not instance_list_running(socket=socket).exists()
        period = None if triggered else power_period_get_open(socket=socket)
        if period is None:  # first holder (or a holder's period was lost): command the relay ON
            period = socket_power_on(socket=socket, by=instance.id, cause=PowerCause.REQUESTED)
        instance.power_period, instance.power_on_at, instance.triggered_power_on = period, period.power_on_at, triggered
        instance.save(force_insert=True)
        instance_schedule_deadline(instance=instance)
    return StartResult(instance=instance, triggered_power_on=triggered)


def instance_stop(*, instance_id: str, reason: str = StopReason.REQUESTED) -> StopResult:
    """Stop an instance; the last running one powers its socket off. Repeat stops are no-ops.

    A requested stop writes nothing when the device fails (the caller gets the error and
    may retry). Raises InstanceNotFound, SocketDeviceError, SocketPowerFailed.
    """
    instance = instance_get(instance_id=instance_id)
    with socket_device_faults(socket=instance.socket), transaction.atomic():
        socket = socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance.pk)
        if not instance.is_running:
            return StopResult(instance=instance, triggered_power_off=False)
        triggered = instance_finish(socket=socket, instance=instance, reason=reason)
    return StopResult(instance=instance, triggered_power_off=triggered)


def instance_delete(*, instance_id: str) -> StopResult:
    """Stop the instance if it runs, then hide it from the API; the row stays for audit."""
    instance = instance_get(instance_id=instance_id)
    with socket_device_faults(socket=instance.socket), transaction.atomic():
        socket = socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance.pk)
        triggered = instance_finish(socket=socket, instance=instance, reason=StopReason.DELETED) if instance.is_running else False
        instance.deleted_at = timezone.now()
        instance.save(update_fields=["deleted_at"])
    return StopResult(instance=instance, triggered_power_off=triggered)


def emergency_stop(*, socket: Socket, triggered_by: str | None = None) -> EmergencyResult:
    """Stop every running instance of the socket, power it off and lock it until recover.

    The decision is committed even when the device does not answer: the instances stay
    stopped, the lock stays on and reconcile keeps driving the plug OFF. The device error
    is raised after the commit. Raises SocketDeviceError, SocketPowerFailed.
    """
    device_error = None
    with transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        socket_set_emergency(socket=socket, stopped=True, by=triggered_by or "")
        running = list(instance_list_running(socket=socket))
        now = timezone.now()
        for instance in running:
            instance_mark_stopped(instance=instance, reason=StopReason.EMERGENCY, at=now)
        try:
            socket_power_off(socket=socket, by="<emergency>", cause=PowerCause.EMERGENCY)
            Instance.objects.filter(pk__in=[i.pk for i in running]).update(power_off_at=now)
        except (SocketDeviceError, SocketPowerFailed) as exc:
            device_error = exc
    if device_error is not None:
        with socket_device_faults(socket=socket):
            raise device_error
    return EmergencyResult(socket=socket, stopped_instances=[i.pk for i in running])


def recover(*, socket: Socket) -> Socket:
    """Lift the emergency lock so instances can start again."""
    with transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        return socket_set_emergency(socket=socket, stopped=False)


def instance_finish(*, socket: Socket, instance: Instance, reason: str) -> bool:
    """Stop a running instance under the socket lock; power off if it was the last holder."""
    _socket_sample_if_reachable(socket=socket)
    now = timezone.now()
    last = not instance_list_running(socket=socket).exclude(pk=instance.pk).exists()
    if last:
        socket_power_off(socket=socket, by=power_off_by(instance=instance, reason=reason), cause=reason)
        instance.power_off_at = now
        instance.triggered_power_off = True
    instance_mark_stopped(instance=instance, reason=reason, at=now)
    return last


def power_off_by(*, instance: Instance, reason: str) -> str:
    """Who a power period is closed by: the instance for its own stop, else `<timeout>`, `<manual>`, …"""
    return instance.pk if reason in (StopReason.REQUESTED, StopReason.DELETED) else f"<{reason}>"


def _socket_sample_if_reachable(*, socket: Socket) -> None:
    """Record a closing meter reading for the energy figures; a failed read does not block a stop."""
    try:
        reading = socket_read_energy(socket=socket)
    except SocketDeviceError:
        return
    energy_sample_record(socket=socket, reading=reading)


def instance_mark_stopped(*, instance: Instance, reason: str, at) -> None:
    instance.stopped_at, instance.stop_reason = at, reason
    instance.energy_consumed_wh = instance_energy_consumed_wh(instance=instance)
    instance.save()


def instance_energy_consumed_wh(*, instance: Instance) -> float | None:
    """Energy (Wh) the socket's meter counted since the instance started, from the samples."""
    start_total = instance.energy_at_start.get("total")
    latest = energy_sample_latest(socket=instance.socket)
    if start_total is None or latest is None:
        return None
    return round(max(latest.total_kwh - start_total, 0.0) * 1000, 3)


def _energy_snapshot(reading: EnergyReading) -> dict:
    """The seed's `energy` object."""
    return {
        "today": reading.today_kwh,
        "total": reading.total_kwh,
        "power": reading.power_w,
        "apparentPower": reading.apparent_power_va,
        "reactivePower": reading.reactive_power_var,
        "factor": reading.power_factor,
        "voltage": reading.voltage_v,
        "current": reading.current_a,
    }


def instance_schedule_deadline(*, instance: Instance) -> None:
    """After commit, a task at the instance's deadline; the beat sweep is the backstop if it is lost."""
    if instance.deadline_at is None:
        return
    from ..tasks import enforce_deadline  # the tasks module imports this one

    transaction.on_commit(lambda: enforce_deadline.apply_async((instance.pk,), eta=instance.deadline_at), robust=True)
