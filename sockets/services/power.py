"""The relay of a socket: its lock, the one relay command, the one power-period writer, the emergency flag.

Safety by construction (DESIGN §6.1): a relay command is only sent inside
`recording_device_faults()`, which remembers it; whatever raises afterwards (a device
error, a database error, a bug), once the transaction that sent it has rolled back the
socket's observed power is UNKNOWN, so reconcile, never monitoring, settles the relay
and a half-done start is never taken for a hand switching the plug on.
"""
import contextlib
import enum
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, OperationalError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.actors import Actor
from audit.ledger import ledger_record
from audit.models import EventKind
from smartsocket_site.operations import event_count

from ..drivers import DRIVERS, DeviceAuthError, DeviceError, DeviceProtocolError, DeviceTimeout, DeviceUnreachable, EnergyReading, SocketDriver, get_driver
from ..exceptions import SocketDeviceError, SocketNotFound, SocketPowerFailed
from ..models import MANUAL, UNKNOWN_ACTOR, PowerCause, PowerPeriod, PowerState, Socket
from ..selectors import power_period_get_open

logger = logging.getLogger(__name__)

DeviceFailure = SocketDeviceError | SocketPowerFailed


def socket_lock(*, socket_id: int, nowait: bool = False) -> Socket:
    """Lock and re-read the socket row. Call inside transaction.atomic(), before any other lock. `nowait`: raise
    SocketBusy at once when another transaction holds the lock (PostgreSQL; on SQLite the IMMEDIATE transaction
    has waited for the writer already)."""
    try:
        return Socket.objects.select_for_update(no_key=True, nowait=nowait).get(pk=socket_id)
    except OperationalError as exc:
        if nowait and getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise SocketBusy(socket_id) from exc
        raise


class SocketBusy(Exception):
    """socket_lock(nowait=True) found the lock held (a start or stop under way). Never reaches a client."""


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for FOR UPDATE NOWAIT on a locked row


def socket_lock_named(*, name: str | None) -> Socket:
    """Lock and read the socket called `name` (the default socket when empty) in one statement. Raises SocketNotFound."""
    name = name or settings.SMARTSOCKET_DEFAULT_SOCKET_NAME
    try:
        return Socket.objects.select_for_update(no_key=True).get(name=name)
    except Socket.DoesNotExist:
        raise SocketNotFound(f"no socket named {name!r}", socket=name) from None


@contextlib.contextmanager
def socket_changes_batched(*, socket: Socket) -> Iterator[Socket]:
    """Inside, the services' changes to the locked `socket` row are written in ONE UPDATE when the block ends
    without an exception (the hot start and stop paths); outside, each change is written at once. Writes made
    meanwhile by a queryset (a fault recorded) are never overwritten: only the fields the services set are saved."""
    socket._batched_fields = set()
    try:
        yield socket
        fields = socket._batched_fields
    finally:
        del socket._batched_fields
    if fields:
        socket.save(update_fields=sorted(fields))


def socket_save_fields(*, socket: Socket, fields: list[str]) -> None:
    """Write `fields` of the locked socket now, or at the end of socket_changes_batched()."""
    batched = getattr(socket, "_batched_fields", None)
    if batched is None:
        socket.save(update_fields=fields)
    else:
        batched.update(fields)


def socket_driver(*, socket: Socket, quick: bool = False) -> SocketDriver:
    """The socket's driver; `quick`: timeouts of at most 1 s, for probes whose failure only means "try later"."""
    return get_driver(driver=socket.driver, address=socket.address, channel=socket.channel, username=socket.username, password=socket.password,
                      quick=quick)


def device_call_bound() -> timedelta:
    """The longest one driver call can take (connect is retried once): what a lease must outlive."""
    return timedelta(seconds=2 * settings.SMARTSOCKET_DEVICE_CONNECT_TIMEOUT + settings.SMARTSOCKET_DEVICE_READ_TIMEOUT)


class _DeviceRequests(threading.local):
    """Device requests made by this thread inside the current recording_device_faults(): socket id → outcome."""

    SENT, ANSWERED, READ_FAILED = "sent", "answered", "read_failed"

    def __init__(self):
        self.depth = 0
        self.outcomes: dict[int, str] = {}

    def note(self, socket_id: int, outcome: str) -> None:
        if outcome != self.READ_FAILED or socket_id not in self.outcomes:
            self.outcomes[socket_id] = outcome


_requests = _DeviceRequests()


@contextlib.contextmanager
def recording_device_faults() -> Iterator[None]:
    """While inside, anything raised after a relay command leaves that socket UNKNOWN for reconcile.

    Put it around the service's `transaction.atomic()`. It works wherever it is nested:
    each recorder whose own transaction has rolled back when the exception reaches it
    records the fault (again, harmlessly, if an outer one rolls back too), and the
    outermost one forgets the requests once it exits. A device fault of a read (no relay
    command sent) is recorded too: the socket is then offline with the error.
    """
    connection = transaction.get_connection()
    blocks_at_entry = len(connection.atomic_blocks)
    _requests.depth += 1
    try:
        yield
    except BaseException as exc:
        if _requests.outcomes and len(connection.atomic_blocks) <= blocks_at_entry:
            _socket_record_request_faults(outcomes=dict(_requests.outcomes), error=exc)
        raise
    finally:
        _requests.depth -= 1
        if _requests.depth == 0:
            _requests.outcomes.clear()


def _socket_record_request_faults(*, outcomes: dict[int, str], error: BaseException) -> None:
    device_fault = isinstance(error, (SocketDeviceError, SocketPowerFailed))
    if not device_fault:
        error = SocketDeviceError(f"failed after a relay command ({type(error).__name__}); reconcile settles the relay")
    for socket_id, outcome in outcomes.items():
        if outcome == _DeviceRequests.READ_FAILED and not device_fault:
            continue  # nothing was commanded: the relay is where it was
        try:
            socket_record_fault(socket_id=socket_id, error=error, answered=outcome == _DeviceRequests.ANSWERED)
        except DatabaseError:  # the surrounding transaction is broken; an outer recorder writes it
            logger.warning("socket %s: fault not recorded yet (transaction broken): %s", socket_id, error)


def device_error_kind(error: BaseException) -> str:
    """The precise kind of a device fault, for logs and metrics: timeout, refused, auth, protocol, wrong_state, other."""
    if isinstance(error, SocketPowerFailed):
        return "wrong_state"
    cause = error.__cause__ if isinstance(error, SocketDeviceError) and error.__cause__ is not None else error
    if isinstance(cause, DeviceAuthError):
        return "auth"
    if isinstance(cause, DeviceTimeout):
        return "timeout"
    if isinstance(cause, DeviceUnreachable):
        return "refused"
    if isinstance(cause, DeviceProtocolError):
        return "protocol"
    return "other"


def socket_record_fault(*, socket_id: int, error: Exception, answered: bool = False) -> None:
    """After a failed device command: relay state UNKNOWN (for reconcile), online only if it answered."""
    event_count(name="device_errors", label=device_error_kind(error))
    logger.warning("device fault: socket id %s (%s): %s", socket_id, device_error_kind(error), error)
    before = Socket.objects.filter(pk=socket_id).values("is_online", "last_error").first()
    online, message = answered or isinstance(error, SocketPowerFailed), str(error)[:255]
    # The plug's saved off-timer is not known any more either (the command may or may not have set it).
    Socket.objects.filter(pk=socket_id).update(observed_power=PowerState.UNKNOWN, is_online=online, last_error=message, failsafe_preset_seconds=None)
    if before is not None and (before["is_online"] != online or before["last_error"] != message):
        ledger_record(kind=EventKind.DEVICE_FAULT if online or not before["is_online"] else EventKind.DEVICE_OFFLINE,
                      socket_id=socket_id, reason=device_error_kind(error), data={"error": message})


def socket_record_reachability(*, socket: Socket, online: bool, error: str = "") -> None:
    """Record in the ledger a socket going offline or coming back (`socket` as it was before); nothing if unchanged."""
    if socket.is_online != online:
        ledger_record(kind=EventKind.DEVICE_ONLINE if online else EventKind.DEVICE_OFFLINE, socket_id=socket.pk,
                      data={"error": error} if error else {})


def socket_mark_offline(*, socket_id: int, error: str) -> bool:
    """The device is known to be gone (its MQTT last will): offline, relay UNKNOWN, recorded once. True if it changed."""
    with transaction.atomic():
        socket = socket_lock(socket_id=socket_id)
        if not socket.is_online and socket.observed_power == PowerState.UNKNOWN:
            return False
        socket_record_reachability(socket=socket, online=False, error=error)
        socket.is_online, socket.observed_power, socket.last_error = False, PowerState.UNKNOWN, error[:255]
        socket.save(update_fields=["is_online", "observed_power", "last_error"])
    logger.warning("%s: offline: %s", socket.name, error)
    return True


def _socket_command(*, socket: Socket, on: bool, by: str, cause: str) -> None:
    """The one relay command: record the target, switch, check the device's answer, mark it seen.

    Switching ON arms the plug's own off-timer first (for `failsafe_target_at`, see
    socket_arm_failsafe); `Power Off` cancels it. Requires the socket lock inside
    recording_device_faults(). Raises SocketDeviceError, SocketPowerFailed.
    """
    if _requests.depth == 0:
        raise RuntimeError("relay commands are sent only inside recording_device_faults()")
    wanted = PowerState.ON if on else PowerState.OFF
    socket_set_desired(socket=socket, on=on, by=by, cause=cause)
    driver = socket_driver(socket=socket)
    off_after = _socket_failsafe_seconds(socket=socket) if on else None
    armed = driver.off_timer_seconds(off_after) if off_after is not None else None
    # A timer the plug keeps as a setting (PulseTime) that already holds this value is not sent again:
    # `Power On` restarts it, so the ON is one request.
    kept = armed is not None and driver.off_timer_is_setting and socket.failsafe_preset_seconds == armed
    _requests.note(socket.pk, _DeviceRequests.SENT)
    try:
        reported = driver.set_power(on, off_after=None if kept else off_after)
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc
    _requests.note(socket.pk, _DeviceRequests.ANSWERED)
    if reported != on:
        raise SocketPowerFailed(f"{socket.name}: asked for {wanted}, the device reports {'ON' if reported else 'OFF'}", socket=socket.name)
    if armed is not None and driver.off_timer_is_setting:
        socket.failsafe_preset_seconds = armed
        socket_save_fields(socket=socket, fields=["failsafe_preset_seconds"])
    socket_mark_seen(socket=socket, observed=wanted, armed_for=armed)


def socket_failsafe_supported(*, socket: Socket) -> bool:
    """The service arms this plug's own off-timer: on (SMARTSOCKET_FAILSAFE and the socket's `failsafe`) and the driver has one."""
    return settings.SMARTSOCKET_FAILSAFE and socket.failsafe and _driver_has_timer(socket=socket)


def _driver_has_timer(*, socket: Socket) -> bool:
    return getattr(DRIVERS.get(socket.driver), "failsafe_max_seconds", 0) > 0


def socket_set_failsafe_target(*, socket: Socket, until: datetime | None) -> None:
    """Record when the plug's own off-timer must end (None: no timer). Requires the socket lock; arming is separate."""
    if socket.failsafe_target_at != until:
        socket.failsafe_target_at = until
        socket_save_fields(socket=socket, fields=["failsafe_target_at"])


def socket_failsafe_needs_arming(*, socket: Socket) -> bool:
    """The armed timer (as recorded) would end before the target, or runs while no timer is wanted."""
    armed, target = socket.failsafe_expires_at, socket.failsafe_target_at
    if target is None:
        return armed is not None
    return armed is None or armed < target


def socket_arm_failsafe(*, socket: Socket, force: bool = False) -> bool:
    """Bring the plug's own off-timer to `failsafe_target_at` — or clear it (`PulseTime 0`) when no timer is
    wanted or the failsafe is off — while the socket must be ON.

    Sent when the socket's desired power is ON (the relay may be ON even while its observed
    state is UNKNOWN; a timer set on an OFF relay is harmless) and either `force` is given or
    socket_failsafe_needs_arming. One device request; requires the socket lock. True when
    the device was asked. Raises SocketDeviceError.
    """
    seconds = _socket_failsafe_seconds(socket=socket)
    if seconds is None or socket.desired_power != PowerState.ON:
        return False
    if not force and not socket_failsafe_needs_arming(socket=socket):
        return False
    driver = socket_driver(socket=socket)
    try:
        seconds = driver.arm_off_timer(seconds)
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: failsafe timer not set: {exc}", socket=socket.name) from exc
    _socket_mark_armed(socket=socket, seconds=seconds, preset=driver.off_timer_is_setting)
    return True


def socket_failsafe_is_wrong(*, socket: Socket, remaining: float) -> bool:
    """The plug's timer, `remaining` seconds as read, must be set again: it runs while no timer is wanted, would end
    early (a reboot, drift), outlives the target by more than a little, or a target beyond the device's range has
    used up half of that range."""
    target, now = socket.failsafe_target_at, timezone.now()
    if target is None:
        return remaining > 0
    ends, device_range = now + timedelta(seconds=remaining), DRIVERS[socket.driver].failsafe_max_seconds
    tolerance = min(timedelta(seconds=1), timedelta(seconds=device_range / 10))  # Remaining counts whole seconds above 11.1 s
    reach = now + timedelta(seconds=device_range / 2)
    return ends < min(target, reach) - tolerance or ends > target + 2 * tolerance + timedelta(seconds=1)


def socket_read_failsafe(*, socket: Socket) -> float | None:
    """Seconds left on the plug's own off-timer (0: not counting), read without the lock; None if it does not answer."""
    try:
        return socket_driver(socket=socket, quick=True).read_off_timer()
    except DeviceError:
        return None


def _socket_failsafe_seconds(*, socket: Socket) -> float | None:
    """Seconds the plug's off-timer must run from now (0: no timer), or None when the driver has no timer.

    A plug whose failsafe is off gets 0: it must not keep a timer left from before (PulseTime
    is a saved setting that every `Power On`, even a button press, restarts).
    """
    if not _driver_has_timer(socket=socket):
        return None
    if not socket_failsafe_supported(socket=socket) or socket.failsafe_target_at is None:
        return 0.0
    remaining = (socket.failsafe_target_at - timezone.now()).total_seconds()
    return min(max(remaining, 0.1), DRIVERS[socket.driver].failsafe_max_seconds)


def _socket_mark_armed(*, socket: Socket, seconds: float | None, preset: bool) -> None:
    if seconds is None:
        return
    socket.failsafe_expires_at = timezone.now() + timedelta(seconds=seconds) if seconds > 0 else None
    fields = ["failsafe_expires_at"]
    if preset:  # the plug keeps it as its setting: the next `Power On` restarts it
        socket.failsafe_preset_seconds = seconds
        fields.append("failsafe_preset_seconds")
    socket_save_fields(socket=socket, fields=fields)


def power_period_open(*, socket: Socket, by: str, cause: str, at: datetime | None = None, actor: Actor | None = None,
                      none_open: bool = False) -> PowerPeriod:
    """The socket's open power period, or a new one from `at` (now) — the one place a period opens (and its event).

    `none_open`: the caller knows none is open (the relay was settled OFF), so it is not looked up; if one were,
    the one-open-period constraint fails the transaction.
    """
    period = None if none_open else power_period_get_open(socket=socket)
    if period is None:
        if at is not None:  # an earlier time (a push, as it arrived) never before the last period closed
            closed = PowerPeriod.objects.filter(socket=socket).aggregate(last=Max("power_off_at"))["last"]
            at = max(at, closed) if closed is not None else at
        period = PowerPeriod.objects.create(socket=socket, power_on_at=at or timezone.now(), power_on_by=by, power_on_cause=cause)
        _power_event(period=period, on=True, by=by, cause=cause, at=period.power_on_at, actor=actor)
    return period


def power_period_close(*, socket: Socket, by: str, cause: str, at: datetime | None = None, actor: Actor | None = None,
                       period: PowerPeriod | None = None) -> PowerPeriod | None:
    """Close the socket's open power period (if any) and return it — the one place a period closes (and its event).

    `period`: the open period as the caller read it under the lock (else it is looked up).
    """
    if period is None or period.power_off_at is not None:
        period = power_period_get_open(socket=socket)
    if period is not None:
        period.power_off_at = max(at or timezone.now(), period.power_on_at)
        period.power_off_by = by
        period.power_off_cause = cause
        period.save(update_fields=["power_off_at", "power_off_by", "power_off_cause"])
        _power_event(period=period, on=False, by=by, cause=cause, at=period.power_off_at, actor=actor)
    return period


def _power_event(*, period: PowerPeriod, on: bool, by: str, cause: str, at: datetime, actor: Actor | None) -> None:
    """power.on/off (power.manual_on/off for a hand), linked to the instance it was for, if one; `actor`: the caller
    whose request switched it (None: the service decided, or a hand)."""
    if cause == PowerCause.MANUAL:
        kind = EventKind.MANUAL_ON if on else EventKind.MANUAL_OFF
    else:
        kind = EventKind.POWER_ON if on else EventKind.POWER_OFF
    ledger_record(kind=kind, socket_id=period.socket_id, instance_id=None if by.startswith("<") else by, reason=cause, at=at, actor=actor,
                  data={"by": by, "period": period.pk})


def socket_power_on(*, socket: Socket, by: str, cause: str = PowerCause.REQUESTED, actor: Actor | None = None,
                    none_open: bool = False) -> PowerPeriod:
    """Switch the relay ON and open a power period (or keep the open one; `none_open`: see power_period_open).

    Requires the socket lock inside recording_device_faults(). Raises SocketDeviceError, SocketPowerFailed.
    """
    _socket_command(socket=socket, on=True, by=by, cause=cause)
    return power_period_open(socket=socket, by=by, cause=cause, actor=actor, none_open=none_open)


def socket_take_on(*, socket: Socket, by: str) -> PowerPeriod:
    """The relay was found ON already for a first holder: keep it, nothing is switched.

    The period opens as `<manual>` when a hand switched it on (from a settled OFF), else as
    `<unknown>` (its state was unknown: a failed command, an outage); `by` becomes who it is
    ON for. Requires the socket lock.
    """
    by_hand = socket_is_settled(socket=socket) and socket.observed_power == PowerState.OFF
    socket_set_desired(socket=socket, on=True, by=by, cause=PowerCause.REQUESTED)
    socket_mark_seen(socket=socket, observed=PowerState.ON)
    if by_hand:
        return power_period_open(socket=socket, by=MANUAL, cause=PowerCause.MANUAL)
    return power_period_open(socket=socket, by=UNKNOWN_ACTOR, cause=PowerCause.RECONCILE)


class OffRelay(enum.Enum):
    """How a socket going OFF treats its relay (socket_power_off)."""

    SWITCH = "switch"  # switch it; a device failure raises, so the caller's transaction rolls back
    SWITCH_OR_LEAVE = "switch_or_leave"  # switch it; a failure commits OFF as reconcile's target
    LEAVE = "leave"  # the device did not answer a probe: commit OFF as reconcile's target, do not wait for it
    ALREADY_OFF = "already_off"  # the relay was seen OFF (by hand): record it, send nothing


def socket_power_off(*, socket: Socket, by: str, cause: str, relay: OffRelay = OffRelay.SWITCH,
                     actor: Actor | None = None, period: PowerPeriod | None = None, at: datetime | None = None) -> DeviceFailure | None:
    """The socket goes OFF for `by` (`cause`): the relay as `relay` says, the open period closed once it is OFF
    (`at`: when the relay went OFF, for ALREADY_OFF as the device pushed it; else now).

    Requires the socket lock inside recording_device_faults(). Returns the device failure a
    SWITCH_OR_LEAVE or LEAVE left for reconcile (the observed state is then UNKNOWN and the
    period stays open until reconcile confirms OFF). `period`: the open period if the caller has it.
    SWITCH raises SocketDeviceError, SocketPowerFailed.
    """
    if relay is OffRelay.ALREADY_OFF:
        socket_set_desired(socket=socket, on=False, by=by, cause=cause)
        socket_mark_seen(socket=socket, observed=PowerState.OFF)
    elif relay is OffRelay.LEAVE:
        socket_set_desired(socket=socket, on=False, by=by, cause=cause)
        error = SocketDeviceError(f"{socket.name}: not answering; reconcile switches it OFF", socket=socket.name)
        socket_record_fault(socket_id=socket.pk, error=error)
        return error
    elif relay is OffRelay.SWITCH_OR_LEAVE:
        try:
            _socket_command(socket=socket, on=False, by=by, cause=cause)
        except (SocketDeviceError, SocketPowerFailed) as exc:
            socket_record_fault(socket_id=socket.pk, error=exc, answered=_requests.outcomes.get(socket.pk) == _DeviceRequests.ANSWERED)
            return exc
    else:
        _socket_command(socket=socket, on=False, by=by, cause=cause)
    power_period_close(socket=socket, by=by, cause=cause, actor=actor, period=period, at=at)
    return None


def socket_set_desired(*, socket: Socket, on: bool, by: str, cause: str) -> None:
    """Record the power the socket must have, for whom and why (reconcile's target). Requires the socket lock."""
    socket.desired_power, socket.desired_by, socket.desired_cause = PowerState.ON if on else PowerState.OFF, by, cause
    socket_save_fields(socket=socket, fields=["desired_power", "desired_by", "desired_cause"])


def socket_is_settled(*, socket: Socket) -> bool:
    """The relay was last confirmed where the database says it must be: only then is a difference a hand's."""
    return socket.observed_power != PowerState.UNKNOWN and socket.observed_power == socket.desired_power


def socket_seen_off(*, socket: Socket) -> bool:
    """The relay is settled OFF and was confirmed so (a command, a poll, a push) within the OFF sample interval:
    a first holder's start switches it ON without reading it first. A hand that switched it ON since is then
    taken for the start's own ON (the relay is ON either way); monitoring would have seen it at the next sample."""
    if not socket_is_settled(socket=socket) or socket.observed_power != PowerState.OFF or socket.last_seen_at is None:
        return False
    return timezone.now() - socket.last_seen_at <= timedelta(seconds=socket_sample_interval(socket=socket, on=False))


def socket_sample_interval(*, socket: Socket, on: bool) -> float:
    """Seconds between two samples of `socket` while its relay is ON (or OFF)."""
    if on:
        return socket.sample_interval_on or settings.SMARTSOCKET_SAMPLE_INTERVAL_ON
    return socket.sample_interval_off or settings.SMARTSOCKET_SAMPLE_INTERVAL_OFF


def socket_next_sample_at(*, socket_id: int, after: datetime, interval: float) -> datetime:
    """The first time after `after` on the socket's own grid: `interval` seconds apart, at a phase its id sets.

    A sample on time is followed by the next one exactly one interval after it was due (the
    beat tick and the queue's latency do not stretch the interval), a late one by the next
    grid time, and the phases of a fleet are spread over the interval (the golden ratio's
    fractions of consecutive ids), so sockets that were all due at once — a restart, an
    outage, a fleet just added — fall back to an even load, not a burst every interval.
    """
    step = max(1, round(interval * 1_000_000))  # in microseconds, exact: the grid does not drift
    phase = int((socket_id * GOLDEN_FRACTION) % 1.0 * step)
    into = ((after - GRID_EPOCH) // timedelta(microseconds=1) - phase) % step
    return after + timedelta(microseconds=step - into)


GRID_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # where every socket's sampling grid starts
GOLDEN_FRACTION = (5 ** 0.5 - 1) / 2


def socket_mark_seen(*, socket: Socket, observed: str, armed_for: float | None = None) -> None:
    """The device answered, its relay as `observed`; `armed_for`: seconds its off-timer was just set to (0: cleared)."""
    socket_record_reachability(socket=socket, online=True)
    socket.observed_power, socket.is_online, socket.last_seen_at, socket.last_error = observed, True, timezone.now(), ""
    fields = ["observed_power", "is_online", "last_seen_at", "last_error"]
    if armed_for is not None and observed == PowerState.ON:
        socket.failsafe_expires_at = socket.last_seen_at + timedelta(seconds=armed_for) if armed_for > 0 else None
        fields.append("failsafe_expires_at")
    if observed == PowerState.OFF and socket.failsafe_expires_at is not None:  # an OFF relay has no countdown to fear
        socket.failsafe_expires_at = None
        fields.append("failsafe_expires_at")
    if observed == PowerState.ON:  # sample at the ON pace from now on (on its grid), not after the slower OFF interval
        first = socket_next_sample_at(socket_id=socket.pk, after=socket.last_seen_at, interval=socket_sample_interval(socket=socket, on=True))
        if socket.next_sample_at is None or socket.next_sample_at > first:
            socket.next_sample_at = first
            fields.append("next_sample_at")
    socket_save_fields(socket=socket, fields=fields)


def socket_set_emergency(*, socket: Socket, stopped: bool, by: str = "") -> Socket:
    """Set or lift the emergency lock. Requires the socket lock."""
    socket.is_emergency_stopped = stopped
    socket.emergency_stopped_at = timezone.now() if stopped else None
    socket.emergency_stopped_by = by if stopped else ""
    socket.save(update_fields=["is_emergency_stopped", "emergency_stopped_at", "emergency_stopped_by"])
    return socket


@dataclass(frozen=True)
class RelayState:
    """The relay and the meter, read together."""

    on: bool
    energy: EnergyReading


def socket_read_state(*, socket: Socket) -> RelayState:
    """Read relay and meter in one device request. Raises SocketDeviceError."""
    try:
        on, energy = socket_driver(socket=socket).read_state()
    except DeviceError as exc:
        _requests.note(socket.pk, _DeviceRequests.READ_FAILED)
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc
    return RelayState(on=on, energy=energy)


_readers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="meter-read")


def socket_read_energy_alongside(*, socket: Socket) -> Future:
    """Start a meter read in the background, to overlap it with a relay command (one round trip for both).

    The future's result is the reading, or None when the device did not answer; it touches no database.
    """
    driver = socket_driver(socket=socket)

    def read() -> EnergyReading | None:
        try:
            return driver.read_energy()
        except DeviceError:
            return None

    return _readers.submit(read)


def socket_read_failsafe_alongside(*, socket: Socket) -> Future:
    """socket_read_failsafe() in the background (to overlap it with another read); touches no database."""
    return _readers.submit(socket_read_failsafe, socket=socket)


def socket_read_energy(*, socket: Socket) -> EnergyReading:
    """Read the socket's meter. Raises SocketDeviceError."""
    try:
        return socket_driver(socket=socket).read_energy()
    except DeviceError as exc:
        _requests.note(socket.pk, _DeviceRequests.READ_FAILED)
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc


def socket_read_relay(*, socket: Socket, quick: bool = False) -> bool | None:
    """The relay state, or None when the device does not answer (within the driver timeouts, or 1 s when `quick`)."""
    try:
        return socket_driver(socket=socket, quick=quick).get_power()
    except DeviceError:
        return None


def socket_read_switch(*, socket: Socket) -> tuple[bool, str | None] | None:
    """The relay state and who switched it last, where the device says (SocketDriver.read_switch); None when it does not answer."""
    try:
        return socket_driver(socket=socket).read_switch()
    except DeviceError:
        return None
