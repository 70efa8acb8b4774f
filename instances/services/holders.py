"""Holders of a socket: start, and the ONE stop path every ending goes through.

`instances_stop()` is the primitive: it decides "last holder", sets the desired power,
talks to the device (or not, as the caller's OffRelay says), closes the power period and
marks the instances. Requested, deleted, timeout, emergency, manual and start-wait-stop's
planned stop all call it; `instance_stop_unattended()` is the form for stops nobody waits for.
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, Subquery
from django.utils import timezone

from audit.actors import Actor
from audit.ledger import ledger_atomic, ledger_record
from audit.models import EventKind
from sockets.exceptions import SocketDeviceError, SocketEmergencyStopped
from sockets.models import EnergySample, PowerCause, PowerPeriod, Socket
from sockets.selectors import energy_sample_latest, power_period_get_open, retention_cutoff
from sockets.services import (
    DeviceFailure,
    OffRelay,
    device_call_bound,
    energy_sample_record,
    recording_device_faults,
    socket_arm_failsafe,
    socket_changes_batched,
    socket_lock,
    socket_lock_named,
    socket_power_off,
    socket_power_on,
    socket_read_energy,
    socket_read_energy_alongside,
    socket_read_relay,
    socket_read_state,
    socket_sample_interval,
    socket_save_fields,
    socket_seen_off,
    socket_set_failsafe_target,
    socket_take_on,
)

from ..exceptions import InstanceNotFound
from ..models import Instance, StopReason
from ..selectors import (
    InstanceMeter, failsafe_target, instance_get, instance_id_check, instance_list_running, instance_meter_of,
)
from .energy import energy_holders, holders_share_energy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    instance: Instance
    triggered_power_on: bool


@dataclass(frozen=True)
class StopResult:
    instance: Instance
    triggered_power_off: bool
    device_error: DeviceFailure | None = None  # left for reconcile by a stop that commits regardless


def instance_client_fitted(client: dict[str, str] | None) -> dict[str, str]:
    """The caller's CPEE headers cut to their columns (NUL removed), so nothing fails to save after the relay switched."""
    fitted = {}
    for key, value in (client or {}).items():
        field = Instance._meta.get_field(f"client_{key}")
        fitted[key] = value.replace("\x00", "")[: field.max_length]
    return fitted


def instance_start(*, socket: Socket | None = None, socket_name: str | None = None, timeout_ms: int | None = None,
                   client: dict[str, str] | None = None, actor: Actor | None = None) -> StartResult:
    """Start an instance on `socket` (or the one called `socket_name`), powering it on if nothing else holds it.

    Holds the socket lock across the device requests, so starts, stops and monitoring are
    serialized per socket; the driver timeout bounds the wait. A first holder of a relay seen
    OFF within the OFF sample interval costs one round trip: `Power On`, with the meter read
    alongside. Otherwise it reads relay and meter first, and a relay already ON (by hand) is
    kept, not switched (`triggeredPowerOn` false). Later holders cost no device request while
    the latest sample is fresh and the plug's timer covers their deadline. Nothing is written
    when anything fails, and a relay that was commanded is left UNKNOWN for reconcile. Raises
    SocketNotFound, SocketEmergencyStopped, SocketDeviceError, SocketPowerFailed.
    """
    client = instance_client_fitted(client)
    with recording_device_faults(), ledger_atomic():
        locked = socket_lock(socket_id=socket.pk) if socket is not None else socket_lock_named(name=socket_name)
        with socket_changes_batched(socket=locked) as socket:
            if socket.is_emergency_stopped:
                raise SocketEmergencyStopped(socket=socket.name)
            running = list(instance_list_running(socket=socket).select_related("power_period"))
            now = timezone.now()
            instance = Instance(
                socket=socket,
                started_at=now,
                emergency_stop_timeout_ms=timeout_ms,
                deadline_at=instance_first_deadline(socket=socket, started_at=now, timeout_ms=timeout_ms),
                energy_consumed_wh=0.0,
                socket_energy_wh=0.0,
                started_by=actor.as_json() if actor else None,
                **{f"client_{key}": value for key, value in client.items()},
            )
            socket_set_failsafe_target(socket=socket, until=failsafe_target(running=[*running, instance]))
            if running:
                period, triggered, sample = _holder_joins(socket=socket, running=running, by=instance.pk, actor=actor)
            else:
                period, triggered, sample = _first_holder(socket=socket, by=instance.pk, actor=actor)
            instance.energy_at_start = _energy_snapshot(sample) if sample is not None else {}
            instance.power_period, instance.power_on_at, instance.triggered_power_on = period, period.power_on_at, triggered
            instance.save(force_insert=True)
            ledger_record(kind=EventKind.INSTANCE_START, socket_id=socket.pk, instance_id=instance.pk, actor=actor, at=now, data={
                "emergencyStopTimeout": timeout_ms, "deadline": instance.deadline_at, "triggeredPowerOn": triggered, "period": period.pk,
            })
        instance_schedule_deadline(instance=instance)
    instance.meter = InstanceMeter(currents=[], energy_consumed_wh=0.0, socket_energy_wh=0.0)  # it has run no time yet
    logger.info("start: socket=%s instance=%s deadline=%s triggeredPowerOn=%s label=%r instanceUrl=%r", socket.name, instance.pk,
                instance.deadline_at.isoformat() if instance.deadline_at else None, triggered, instance.client_label, instance.client_instance_url)
    return StartResult(instance=instance, triggered_power_on=triggered)


def _first_holder(*, socket: Socket, by: str, actor: Actor | None) -> tuple[PowerPeriod, bool, EnergySample | None]:
    """Power the socket on for its first holder: (the period, whether the relay was switched, the meter sample)."""
    if socket_seen_off(socket=socket):  # one round trip: `Power On`, the meter read alongside
        reading = socket_read_energy_alongside(socket=socket)
        period = socket_power_on(socket=socket, by=by, cause=PowerCause.REQUESTED, actor=actor, none_open=True)
        reading = reading.result()
        # Stamped when it arrived, from just before or just after the switch; the latest sample if it failed.
        sample = energy_sample_record(socket=socket, reading=reading, relay_known=False) if reading else energy_sample_latest(socket=socket)
        return period, True, sample
    state = socket_read_state(socket=socket)
    sample = energy_sample_record(socket=socket, reading=state.energy, is_on=state.on)
    if state.on:  # ON by hand before anybody held it: kept, and its timer may be a leftover
        period = socket_take_on(socket=socket, by=by)
        socket_arm_failsafe(socket=socket, force=True)
        return period, False, sample
    return socket_power_on(socket=socket, by=by, cause=PowerCause.REQUESTED, actor=actor), True, sample


def _holder_joins(*, socket: Socket, running: list[Instance], by: str, actor: Actor | None) -> tuple[PowerPeriod, bool, EnergySample]:
    """Another holder joins: the open period, the plug's timer moved if it would end before the new deadline (a refusal
    fails the start), and the latest sample as the snapshot while it is younger than the ON sample interval."""
    period = running[-1].power_period
    if period is None or period.power_off_at is not None:  # its holders' period is not the open one: look it up
        period = power_period_get_open(socket=socket)
    sample = energy_sample_latest(socket=socket)
    if sample is None or sample.taken_at < timezone.now() - timedelta(seconds=socket_sample_interval(socket=socket, on=True)):
        sample = energy_sample_record(socket=socket, reading=socket_read_energy(socket=socket))
    if period is None:  # a holder's period was lost: switch it ON again
        return socket_power_on(socket=socket, by=by, cause=PowerCause.REQUESTED, actor=actor), True, sample
    socket_arm_failsafe(socket=socket)
    return period, False, sample


def instance_first_deadline(*, socket: Socket, started_at, timeout_ms: int | None):
    """The deadline a new holder gets: its emergencyStopTimeout, else the socket's max_on_seconds ceiling, else none."""
    if timeout_ms is not None:
        return started_at + timedelta(milliseconds=timeout_ms)
    if socket.max_on_seconds:
        return started_at + timedelta(seconds=socket.max_on_seconds)
    return None


def instances_stop(*, socket: Socket, instances: list[Instance], reason: str, relay: OffRelay, actor: Actor | None = None,
                   running: list[Instance] | None = None, at: datetime | None = None) -> DeviceFailure | None:
    """THE stop path: end the running `instances` of `socket`; if no other holder remains, the socket goes OFF.

    Requires the socket lock inside recording_device_faults(). The last holders' stop sets the
    desired power OFF in the name of the instance (its own requested or deleted stop) or of
    the reason (`<timeout>`, `<emergency>`, `<manual>`), treats the relay as `relay` says and
    closes the period once the relay is OFF. Returns the device failure a SWITCH_OR_LEAVE or
    LEAVE left for reconcile; OffRelay.SWITCH raises it instead (the caller's transaction rolls back).
    Each ending is recorded in the ledger here, with `actor` (None: the service decided). `running`: the
    socket's running instances as the caller read them under this lock (with their period), if it did.
    `at`: when it happened, if before now (the relay went OFF by hand as the device pushed it); never before a start.
    """
    ids = [instance.pk for instance in instances]
    if running is None:
        remaining = list(instance_list_running(socket=socket).exclude(pk__in=ids))
    else:
        remaining = [holder for holder in running if holder.pk not in ids]
    last = not remaining
    now = timezone.now() if at is None else max([min(at, timezone.now()), *(instance.started_at for instance in instances)])
    error = None
    socket_set_failsafe_target(socket=socket, until=failsafe_target(running=remaining))
    if remaining:  # a holder without a deadline left: the remaining ones' timer is armed (a longer one shrinks later)
        socket_rearm_failsafe(socket=socket)
    shared, currents = False, None
    if last:
        # A requested stop's closing meter reading, overlapped with the `Power Off` (one round trip for
        # both); stops the service decides on its own do not wait for a reading.
        closing = socket_read_energy_alongside(socket=socket) if relay is OffRelay.SWITCH else None
        error = socket_power_off(socket=socket, by=_power_off_by(instances=instances, reason=reason), cause=reason, relay=relay, actor=actor,
                                 period=_open_period_of(instances), at=now if at is not None else None)
        reading = closing.result() if closing is not None else None
        if reading is not None:  # stamped when it arrived; it may be from just before or just after the switch
            energy_sample_record(socket=socket, reading=reading, relay_known=False)
            # The last holders' figures are final at once; one alone gets its meter by the same query.
            window = (instances[0].started_at, now) if len(instances) == 1 and instances[0].started_at >= retention_cutoff() else None
            holders = energy_holders(socket=socket, running=running) if running is not None else None
            currents = holders_share_energy(socket=socket, known=instances, holders=holders, window=window)
            shared = True
    for instance in instances:
        instance.stopped_at, instance.stop_reason = now, reason
        instance.triggered_power_off = last and len(instances) == 1 and reason not in (StopReason.MANUAL, StopReason.EMERGENCY)
        instance.power_off_at = now if last and error is None else None
        instance.stopped_by = actor.as_json() if actor else None
        # The energy figures only when shared here, from the values read under this lock (else the next sample completes them).
        instance.save(update_fields=["stopped_at", "stop_reason", "triggered_power_off", "power_off_at", "stopped_by",
                                     *(["energy_consumed_wh", "socket_energy_wh"] if shared else [])])
        if currents is not None:
            instance.meter = instance_meter_of(instance=instance, currents=currents)
        ledger_record(kind=STOP_EVENTS.get(reason, EventKind.INSTANCE_STOP), socket_id=socket.pk, instance_id=instance.pk, reason=reason,
                      actor=actor, at=now, data={"lastHolder": last, "triggeredPowerOff": instance.triggered_power_off,
                                                 "energyConsumedWh": instance.energy_consumed_wh, "socketEnergyWh": instance.socket_energy_wh, "deviceError": str(error) if error else None})
    if not shared:  # these holders' energy is shared by the next sample, which must look for them
        socket.energy_unshared_stop_at = now
        socket_save_fields(socket=socket, fields=["energy_unshared_stop_at"])
    logger.info("stop: socket=%s instances=%s reason=%s lastHolder=%s%s", socket.name, ids, reason, last,
                f" (the plug did not confirm OFF; reconcile takes over: {error})" if error else "")
    return error


def _open_period_of(instances: list[Instance]) -> PowerPeriod | None:
    """The open power period the stopping instances hold, if it came with them (select_related), else None."""
    for instance in instances:
        if Instance.power_period.is_cached(instance) and instance.power_period is not None and instance.power_period.power_off_at is None:
            return instance.power_period
    return None


STOP_EVENTS = {StopReason.TIMEOUT: EventKind.INSTANCE_TIMEOUT, StopReason.MAX_ON: EventKind.INSTANCE_TIMEOUT, StopReason.DELETED: EventKind.INSTANCE_DELETE}


def socket_rearm_failsafe(*, socket: Socket, force: bool = False) -> bool:
    """Arm the plug's own off-timer for the socket's target where a refusal must not undo the change (a stop,
    a monitoring pass): the refusal is noted, monitoring retries, and a timer that fires meanwhile is recorded
    as `<failsafe>` (the plug errs towards OFF). Requires the socket lock.
    """
    try:
        return socket_arm_failsafe(socket=socket, force=force)
    except SocketDeviceError as exc:
        socket.last_error = str(exc)[:255]
        socket_save_fields(socket=socket, fields=["last_error"])
        logger.warning("%s", exc)
        return False


def _power_off_by(*, instances: list[Instance], reason: str) -> str:
    """Who a power period is closed by: the instance for its own stop, else `<timeout>`, `<manual>`, …"""
    if len(instances) == 1 and reason in (StopReason.REQUESTED, StopReason.DELETED):
        return instances[0].pk
    return f"<{reason}>"


def instance_stop(*, instance_id: str, reason: str = StopReason.REQUESTED, actor: Actor | None = None) -> StopResult:
    """Stop an instance; the last running one powers its socket off. Repeat stops are no-ops.

    A requested stop writes nothing when the device fails (the caller gets the error and
    may retry). Raises InstanceNotFound, SocketDeviceError, SocketPowerFailed.
    """
    return _instance_stop_requested(instance_id=instance_id, reason=reason, delete=False, actor=actor)


def instance_delete(*, instance_id: str, actor: Actor | None = None) -> StopResult:
    """Stop the instance if it runs, then hide it from the API; the row stays for audit."""
    return _instance_stop_requested(instance_id=instance_id, reason=StopReason.DELETED, delete=True, actor=actor)


def _instance_stop_requested(*, instance_id: str, reason: str, delete: bool, actor: Actor | None) -> StopResult:
    with recording_device_faults(), ledger_atomic():
        locked = _socket_lock_holding(instance_id=instance_id)
        with socket_changes_batched(socket=locked) as socket:
            running = list(instance_list_running(socket=socket).select_related("power_period"))
            instance = next((holder for holder in running if holder.pk == instance_id), None)
            if instance is None:  # stopped before: read as it is (a repeat stop, or a delete that hides it)
                instance = instance_get(instance_id=instance_id)
            instance.socket = socket
            triggered = False
            if instance.is_running:
                instances_stop(socket=socket, instances=[instance], reason=reason, relay=OffRelay.SWITCH, actor=actor, running=running)
                triggered = instance.triggered_power_off
            elif delete:  # a stopped one is only hidden: that is recorded too
                ledger_record(kind=EventKind.INSTANCE_DELETE, socket_id=socket.pk, instance_id=instance.pk, reason=instance.stop_reason, actor=actor)
            if delete:
                instance.deleted_at = timezone.now()
                instance.save(update_fields=["deleted_at"])
    return StopResult(instance=instance, triggered_power_off=triggered)


def _socket_lock_holding(*, instance_id: str) -> Socket:
    """Lock the socket of a visible instance, found and locked in one statement. Raises InstanceNotFound."""
    socket_id = Instance.objects.filter(pk=instance_id_check(instance_id=instance_id), deleted_at=None).values("socket_id")
    try:
        return Socket.objects.select_for_update(no_key=True).get(pk=Subquery(socket_id))
    except Socket.DoesNotExist:
        raise InstanceNotFound(f"no instance {instance_id!r}", instanceId=instance_id) from None


def instance_stop_unattended(*, instance_id: str, reason: str, due=None) -> StopResult | None:
    """A stop the service decided on its own (timeout, planned stop): committed even if the device fails.

    One worker at a time per instance (a lease in `stop_claimed_until`, by conditional
    UPDATE), so sweeps never pile up stops behind a slow plug. The device is probed first,
    without the lock: one that does not answer is not waited for under the lock (the stop
    records the desired OFF; reconcile switches it later), and a failure is recorded on
    the socket. None when the instance is gone, not running, claimed elsewhere, or
    `due(instance)` is false under the lock.
    """
    now = timezone.now()
    lease = now + 3 * device_call_bound() + timedelta(seconds=1)  # probe, then at most the switch and a re-arm under the lock
    mine = Instance.objects.filter(pk=instance_id, stop_claimed_until=lease)
    claimed = Instance.objects.filter(pk=instance_id, stopped_at=None).filter(
        Q(stop_claimed_until=None) | Q(stop_claimed_until__lt=now)
    ).update(stop_claimed_until=lease)
    if not claimed:
        return None
    try:
        instance = Instance.objects.select_related("socket").get(pk=instance_id)
        reachable = socket_read_relay(socket=instance.socket, quick=True) is not None
        with recording_device_faults(), ledger_atomic():
            socket = socket_lock(socket_id=instance.socket_id)
            instance = Instance.objects.select_related("socket").get(pk=instance_id)
            if not instance.is_running or (due is not None and not due(instance)):
                mine.update(stop_claimed_until=None)
                return None
            relay = OffRelay.SWITCH_OR_LEAVE if reachable else OffRelay.LEAVE
            error = instances_stop(socket=socket, instances=[instance], reason=reason, relay=relay)
    except BaseException:
        mine.update(stop_claimed_until=None)  # the next sweep tries again at once
        raise
    return StopResult(instance=instance, triggered_power_off=instance.triggered_power_off, device_error=error)


def _energy_snapshot(sample) -> dict:
    """The seed's `energy` object, and when the reading was taken."""
    return {
        "today": sample.today_kwh,
        "total": sample.total_kwh,
        "power": sample.power_w,
        "apparentPower": sample.apparent_power_va,
        "reactivePower": sample.reactive_power_var,
        "factor": sample.power_factor,
        "voltage": sample.voltage_v,
        "current": sample.current_a,
        "takenAt": sample.taken_at.isoformat(),
    }


def instance_schedule_deadline(*, instance: Instance) -> None:
    """After commit, a task at the instance's deadline; the beat sweep is the backstop if it is lost."""
    if instance.deadline_at is None:
        return
    from ..tasks import enforce_deadline  # the tasks module imports this one

    transaction.on_commit(lambda: enforce_deadline.apply_async((instance.pk,), eta=instance.deadline_at), robust=True)
