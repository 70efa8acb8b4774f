"""Reconcile: drive a plug whose relay is not known to be where the database says, and record it."""
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from audit.ledger import ledger_atomic, ledger_record
from audit.models import EventKind
from smartsocket_site.operations import event_count

from ..drivers import DeviceError
from ..exceptions import SocketDeviceError, SocketPowerFailed
from ..models import PowerCause, PowerState, Socket
from ..selectors import power_period_get_open
from .power import (
    device_call_bound,
    power_period_close,
    power_period_open,
    recording_device_faults,
    socket_driver,
    socket_lock,
    socket_mark_seen,
    socket_power_off,
    socket_power_on,
    socket_read_relay,
    socket_record_fault,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileResult:
    socket_id: int
    action: str  # "none", "not_due", "confirmed", "switched", "failed"
    desired: str


def socket_reconcile(*, socket_id: int, force: bool = False) -> ReconcileResult:
    """Drive the device to the socket's desired power under its lock, and record what was done.

    Switching opens or closes the power period in the name of whoever decided the change
    (`desired_by`/`desired_cause`, e.g. `<timeout>`); a device already there is marked seen
    and its period made to match. One attempt at a time per socket (a lease in
    `reconcile_next_at`, taken by a conditional UPDATE), the device probed without the lock
    first, so a dead plug never holds it. A failure counts an attempt and backs off (1, 2,
    4 … s, at most SMARTSOCKET_RECONCILE_BACKOFF_MAX; at most SMARTSOCKET_RECONCILE_OFF_BACKOFF_MAX
    for a socket that must be OFF); `force` ignores the backoff.
    """
    socket = Socket.objects.get(pk=socket_id)
    state = _socket_reconcile_state(socket=socket, force=force)
    if state is not None:
        return state
    if not force and not _socket_claim_reconcile(socket_id=socket_id):
        return ReconcileResult(socket_id=socket_id, action="not_due", desired=socket.desired_power)
    if socket_read_relay(socket=socket, quick=True) is None:
        return _socket_reconcile_failed(socket=socket, error=SocketDeviceError(f"{socket.name}: not answering", socket=socket.name))
    error = None
    try:
        with recording_device_faults(), ledger_atomic():
            socket = socket_lock(socket_id=socket_id)
            state = _socket_reconcile_state(socket=socket, force=True)
            if state is not None:  # settled meanwhile by a command or another reconcile
                _socket_reconcile_done(socket=socket)
                return state
            by, cause = socket.desired_by or "<reconcile>", socket.desired_cause or PowerCause.RECONCILE
            action = _socket_drive(socket=socket, on=socket.desired_power == PowerState.ON, by=by, cause=cause)
            _socket_reconcile_done(socket=socket)
            ledger_record(kind=EventKind.RECONCILE, socket_id=socket.pk, reason=action, data={"desired": socket.desired_power, "by": by, "cause": cause})
    except (DeviceError, SocketDeviceError, SocketPowerFailed) as exc:
        error = exc
    if error is not None:
        return _socket_reconcile_failed(socket=socket, error=error)
    event_count(name="reconcile_attempts", label=action)
    logger.info("reconcile: %s %s %s (for %s, %s)", socket.name, action, socket.desired_power, by, cause)
    return ReconcileResult(socket_id=socket_id, action=action, desired=socket.desired_power)


def _socket_claim_reconcile(*, socket_id: int) -> bool:
    """Take the reconcile lease (one attempt at a time: sweeps never pile up attempts on a slow plug)."""
    now = timezone.now()
    lease = now + 2 * device_call_bound() + timedelta(seconds=1)
    return bool(Socket.objects.filter(pk=socket_id).filter(Q(reconcile_next_at=None) | Q(reconcile_next_at__lte=now)).update(reconcile_next_at=lease))


def _socket_reconcile_done(*, socket: Socket) -> None:
    socket.reconcile_attempts, socket.reconcile_next_at = 0, None
    socket.save(update_fields=["reconcile_attempts", "reconcile_next_at"])


def _socket_reconcile_state(*, socket: Socket, force: bool) -> ReconcileResult | None:
    """"none" when the socket is settled, "not_due" while backing off; None when there is work."""
    period_open = power_period_get_open(socket=socket) is not None
    if socket.observed_power == socket.desired_power and period_open == (socket.desired_power == PowerState.ON) and socket.reconcile_attempts == 0:
        return ReconcileResult(socket_id=socket.pk, action="none", desired=socket.desired_power)
    if not force and socket.reconcile_next_at is not None and socket.reconcile_next_at > timezone.now():
        return ReconcileResult(socket_id=socket.pk, action="not_due", desired=socket.desired_power)
    return None


def socket_reconcile_backoff(*, socket: Socket, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling, capped (closer for a must-be-OFF socket)."""
    cap = settings.SMARTSOCKET_RECONCILE_BACKOFF_MAX
    if socket.desired_power != PowerState.ON:
        cap = min(cap, settings.SMARTSOCKET_RECONCILE_OFF_BACKOFF_MAX)
    return min(2 ** (attempts - 1), cap)


def _socket_reconcile_failed(*, socket: Socket, error: Exception) -> ReconcileResult:
    """Count the attempt, back off exponentially, and record the fault."""
    event_count(name="reconcile_attempts", label="failed")
    attempts = socket.reconcile_attempts + 1
    delay = socket_reconcile_backoff(socket=socket, attempts=attempts)
    socket_record_fault(socket_id=socket.pk, error=error, answered=isinstance(error, SocketPowerFailed))
    Socket.objects.filter(pk=socket.pk).update(reconcile_attempts=attempts, reconcile_next_at=timezone.now() + timedelta(seconds=delay))
    logger.warning("reconcile: %s not driven %s (attempt %d, next in %gs): %s", socket.name, socket.desired_power, attempts, delay, error)
    return ReconcileResult(socket_id=socket.pk, action="failed", desired=socket.desired_power)


def _socket_drive(*, socket: Socket, on: bool, by: str, cause: str) -> str:
    """Switch the relay unless it already is where it must be; make the power period match."""
    try:
        is_on = socket_driver(socket=socket).get_power()
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc
    if is_on != on:
        if on:
            socket_power_on(socket=socket, by=by, cause=cause)
        else:
            socket_power_off(socket=socket, by=by, cause=cause)
        return "switched"
    socket_mark_seen(socket=socket, observed=PowerState.ON if on else PowerState.OFF)
    if on:
        power_period_open(socket=socket, by=by, cause=cause)
    else:
        power_period_close(socket=socket, by=by, cause=cause)
    return "confirmed"
