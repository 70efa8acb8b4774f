"""Monitoring and reconcile: the background work that keeps sockets and the database in step."""
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..drivers import DeviceError
from ..exceptions import SocketDeviceError, SocketPowerFailed
from ..models import PowerCause, PowerPeriod, PowerState, Socket
from ..selectors import power_period_get_open
from .power import (
    energy_sample_record,
    power_period_close,
    socket_driver,
    socket_lock,
    socket_mark_seen,
    socket_power_off,
    socket_power_on,
    socket_record_fault,
    socket_sample_interval,
)

logger = logging.getLogger(__name__)

MANUAL = "<manual>"


class SocketChange:
    """How the relay differs from what the database last confirmed (socket_detect_change)."""

    MANUAL_ON = "manual_on"
    MANUAL_OFF = "manual_off"
    RECONCILE = "reconcile"


@dataclass(frozen=True)
class SocketPoll:
    """What one monitoring poll saw: the relay (None if unreachable) and whether it differs from the database."""

    socket_id: int
    power: str | None
    differs: bool


@dataclass(frozen=True)
class ReconcileResult:
    socket_id: int
    action: str  # "none", "not_due", "confirmed", "switched", "failed"
    desired: str


def _device_call_bound() -> timedelta:
    """The longest one driver call can take (connect is retried once)."""
    return timedelta(seconds=2 * settings.SMARTSOCKET_DEVICE_CONNECT_TIMEOUT + settings.SMARTSOCKET_DEVICE_READ_TIMEOUT)


def socket_claim_monitoring(*, socket_id: int) -> Socket | None:
    """Take the monitoring lease of a socket whose sample is due, with one conditional UPDATE.

    None when it is not due or another worker holds the lease (HC sendalerts: "another
    worker process got there first"). The lease outlives a poll, so a crashed worker only
    delays the socket's next sample.
    """
    now = timezone.now()
    claimed = (
        Socket.objects.filter(pk=socket_id)
        .filter(Q(next_sample_at=None) | Q(next_sample_at__lte=now))
        .filter(Q(monitor_claimed_until=None) | Q(monitor_claimed_until__lt=now))
        .update(monitor_claimed_until=now + 2 * _device_call_bound() + timedelta(seconds=5))
    )
    return Socket.objects.get(pk=socket_id) if claimed else None


def socket_poll(*, socket_id: int) -> SocketPoll | None:
    """Sample a due socket without its lock: read relay and meter, store the reading, release the lease.

    A dead device costs its driver timeouts, marks the socket offline and its relay UNKNOWN
    (what happened meanwhile is reconcile's to settle). None when not due or claimed elsewhere.
    """
    socket = socket_claim_monitoring(socket_id=socket_id)
    if socket is None:
        return None
    on, error = None, ""
    try:
        driver = socket_driver(socket=socket)
        on = driver.get_power()
        reading = driver.read_energy()
        # Stamped when read: the insert may wait for a stop that switches the relay meanwhile.
        energy_sample_record(socket=socket, reading=reading, is_on=on, taken_at=timezone.now())
    except DeviceError as exc:
        logger.warning("monitor: %s unreachable: %s", socket.name, exc)
        error = str(exc)[:255]
    finally:
        _socket_release_monitoring(socket=socket, on=on, error=error or "monitoring failed")
    if on is None:
        return SocketPoll(socket_id=socket_id, power=None, differs=False)
    power = PowerState.ON if on else PowerState.OFF
    return SocketPoll(socket_id=socket_id, power=power, differs=power != socket.observed_power)


def _socket_release_monitoring(*, socket: Socket, on: bool | None, error: str) -> None:
    """Give the lease back and set when the next sample is due; record online or offline.

    The next sample is due one interval after this one was due, not after it finished,
    so the beat tick and the queue's latency do not stretch the interval.
    """
    now = timezone.now()
    interval = timedelta(seconds=socket_sample_interval(socket=socket, on=on if on is not None else socket.desired_power == PowerState.ON))
    due = socket.next_sample_at + interval if socket.next_sample_at is not None else now + interval
    fields = {"monitor_claimed_until": None, "next_sample_at": due if due > now else now + interval}
    if on is None:
        fields.update(observed_power=PowerState.UNKNOWN, is_online=False, last_error=error)
    else:
        fields.update(is_online=True, last_seen_at=now, last_error="")
    Socket.objects.filter(pk=socket.pk).update(**fields)


def socket_detect_change(*, socket: Socket) -> str | None:
    """Re-read the relay and say how it differs from the database (a SocketChange), or None.

    Requires the socket lock. A manual change is only recognised from a settled socket
    (observed == desired): an UNKNOWN or unsettled state follows a failed command, an
    outage or a restart, and is reconcile's to settle, as is ON by hand on an
    emergency-stopped socket. None: no difference (a concurrent command got there first)
    or the device did not answer.
    """
    try:
        on = socket_driver(socket=socket).get_power()
    except DeviceError:
        return None
    power = PowerState.ON if on else PowerState.OFF
    if power == socket.observed_power:
        return None
    settled = socket.observed_power != PowerState.UNKNOWN and socket.observed_power == socket.desired_power
    if settled and not (on and socket.is_emergency_stopped):  # the emergency lock holds until recover
        return SocketChange.MANUAL_ON if on else SocketChange.MANUAL_OFF
    socket_mark_seen(socket=socket, observed=power)  # what reconcile must start from
    return SocketChange.RECONCILE


def socket_accept_manual_change(*, socket: Socket, on: bool) -> PowerPeriod | None:
    """Take a relay switched by hand as the new desired state; open or close the period as <manual>.

    Requires the socket lock; the caller has seen the device in that state.
    """
    power = PowerState.ON if on else PowerState.OFF
    socket.desired_power, socket.desired_by, socket.desired_cause = power, MANUAL, PowerCause.MANUAL
    socket.save(update_fields=["desired_power", "desired_by", "desired_cause"])
    socket_mark_seen(socket=socket, observed=power)
    logger.info("monitor: %s switched %s by hand", socket.name, power)
    if on:
        return power_period_get_open(socket=socket) or PowerPeriod.objects.create(
            socket=socket, power_on_at=timezone.now(), power_on_by=MANUAL, power_on_cause=PowerCause.MANUAL
        )
    return power_period_close(socket=socket, by=MANUAL, cause=PowerCause.MANUAL)


def socket_reconcile(*, socket_id: int, force: bool = False) -> ReconcileResult:
    """Drive the device to the socket's desired power under its lock, and record what was done.

    Switching opens or closes the power period in the name of whoever decided the change
    (`desired_by`/`desired_cause`, e.g. `<timeout>`); a device already there is marked seen
    and its period made to match. The device is probed without the lock first, so a dead
    plug never holds it. A failure counts an attempt and backs off (1, 2, 4 … s, at most
    SMARTSOCKET_RECONCILE_BACKOFF_MAX) in the database; `force` ignores the backoff.
    """
    socket = Socket.objects.get(pk=socket_id)
    state = _socket_reconcile_state(socket=socket, force=force)
    if state is not None:
        return state
    try:
        socket_driver(socket=socket).get_power()
    except DeviceError as exc:
        return _socket_reconcile_failed(socket=socket, error=exc)
    error = None
    with transaction.atomic():
        socket = socket_lock(socket_id=socket_id)
        state = _socket_reconcile_state(socket=socket, force=True)
        if state is not None:  # settled meanwhile by a command or another reconcile
            return state
        by, cause = socket.desired_by or "<reconcile>", socket.desired_cause or PowerCause.RECONCILE
        try:
            action = _socket_drive(socket=socket, on=socket.desired_power == PowerState.ON, by=by, cause=cause)
        except (DeviceError, SocketDeviceError, SocketPowerFailed) as exc:
            error = exc
        else:
            socket.reconcile_attempts, socket.reconcile_next_at = 0, None
            socket.save(update_fields=["reconcile_attempts", "reconcile_next_at"])
    if error is not None:
        return _socket_reconcile_failed(socket=socket, error=error)
    logger.info("reconcile: %s %s %s (for %s, %s)", socket.name, action, socket.desired_power, by, cause)
    return ReconcileResult(socket_id=socket_id, action=action, desired=socket.desired_power)


def _socket_reconcile_state(*, socket: Socket, force: bool) -> ReconcileResult | None:
    """"none" when the socket is settled, "not_due" while backing off; None when there is work."""
    period_open = power_period_get_open(socket=socket) is not None
    if socket.observed_power == socket.desired_power and period_open == (socket.desired_power == PowerState.ON) and socket.reconcile_attempts == 0:
        return ReconcileResult(socket_id=socket.pk, action="none", desired=socket.desired_power)
    if not force and socket.reconcile_next_at is not None and socket.reconcile_next_at > timezone.now():
        return ReconcileResult(socket_id=socket.pk, action="not_due", desired=socket.desired_power)
    return None


def _socket_reconcile_failed(*, socket: Socket, error: Exception) -> ReconcileResult:
    """Count the attempt, back off exponentially, and record the fault."""
    attempts = socket.reconcile_attempts + 1
    delay = min(2 ** (attempts - 1), settings.SMARTSOCKET_RECONCILE_BACKOFF_MAX)
    socket_record_fault(socket_id=socket.pk, error=error)
    Socket.objects.filter(pk=socket.pk).update(reconcile_attempts=attempts, reconcile_next_at=timezone.now() + timedelta(seconds=delay))
    logger.warning("reconcile: %s not driven %s (attempt %d, next in %gs): %s", socket.name, socket.desired_power, attempts, delay, error)
    return ReconcileResult(socket_id=socket.pk, action="failed", desired=socket.desired_power)


def _socket_drive(*, socket: Socket, on: bool, by: str, cause: str) -> str:
    """Switch the relay unless it already is where it must be; make the power period match."""
    if socket_driver(socket=socket).get_power() != on:
        (socket_power_on if on else socket_power_off)(socket=socket, by=by, cause=cause)
        return "switched"
    socket_mark_seen(socket=socket, observed=PowerState.ON if on else PowerState.OFF)
    if not on:
        power_period_close(socket=socket, by=by, cause=cause)
    elif power_period_get_open(socket=socket) is None:
        PowerPeriod.objects.create(socket=socket, power_on_at=timezone.now(), power_on_by=by, power_on_cause=cause)
    return "confirmed"
