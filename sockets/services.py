"""Every state change of a socket: power, samples, emergency lock, reconcile."""
import contextlib
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .drivers import DeviceError, EnergyReading, SocketDriver, get_driver
from .exceptions import SocketDeviceError, SocketPowerFailed
from .models import EnergySample, PowerCause, PowerPeriod, PowerState, Socket
from .selectors import power_period_get_open

logger = logging.getLogger(__name__)


def socket_lock(*, socket_id: int) -> Socket:
    """Lock and re-read the socket row. Call inside transaction.atomic(), before any other lock."""
    return Socket.objects.select_for_update(no_key=True).get(pk=socket_id)


def socket_driver(*, socket: Socket) -> SocketDriver:
    return get_driver(driver=socket.driver, address=socket.address, username=socket.username, password=socket.password)


@contextlib.contextmanager
def socket_device_faults(*, socket: Socket) -> Iterator[None]:
    """Record a device fault on the socket row after the failed transaction has rolled back.

    Wrap the whole `transaction.atomic()` block in it: the observed state becomes UNKNOWN
    (the command may or may not have reached the relay), so monitoring does not mistake
    the outcome for a manual change and reconcile drives the device where it belongs.
    """
    try:
        yield
    except (SocketDeviceError, SocketPowerFailed) as exc:
        Socket.objects.filter(pk=socket.pk).update(
            observed_power=PowerState.UNKNOWN,
            is_online=isinstance(exc, SocketPowerFailed),
            last_error=str(exc)[:255],
        )
        raise


def socket_read_energy(*, socket: Socket) -> EnergyReading:
    """Read the socket's meter. Raises SocketDeviceError."""
    try:
        return socket_driver(socket=socket).read_energy()
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc


def energy_sample_record(*, socket: Socket, reading: EnergyReading) -> EnergySample:
    """Store a reading, with the relay state last confirmed for the socket."""
    return EnergySample.objects.create(
        socket=socket,
        taken_at=timezone.now(),
        is_on={PowerState.ON: True, PowerState.OFF: False}.get(socket.observed_power),
        power_w=reading.power_w,
        apparent_power_va=reading.apparent_power_va,
        reactive_power_var=reading.reactive_power_var,
        power_factor=reading.power_factor,
        voltage_v=reading.voltage_v,
        current_a=reading.current_a,
        today_kwh=reading.today_kwh,
        total_kwh=reading.total_kwh,
    )


def socket_power_on(*, socket: Socket, by: str, cause: str = PowerCause.REQUESTED) -> PowerPeriod:
    """Switch the relay ON and open a power period (or keep the open one).

    Requires the socket lock. Raises SocketDeviceError, SocketPowerFailed.
    """
    _socket_command(socket=socket, on=True, by=by, cause=cause)
    return power_period_get_open(socket=socket) or PowerPeriod.objects.create(
        socket=socket, power_on_at=timezone.now(), power_on_by=by, power_on_cause=cause
    )


def socket_power_off(*, socket: Socket, by: str, cause: str) -> PowerPeriod | None:
    """Switch the relay OFF and close the open power period, returning it.

    Requires the socket lock. The desired state is saved before the device is asked, so a
    caller that commits despite a device error leaves reconcile a clear target.
    Raises SocketDeviceError, SocketPowerFailed.
    """
    _socket_command(socket=socket, on=False, by=by, cause=cause)
    return power_period_close(socket=socket, by=by, cause=cause)


def power_period_close(*, socket: Socket, by: str, cause: str) -> PowerPeriod | None:
    period = power_period_get_open(socket=socket)
    if period is not None:
        period.power_off_at = max(timezone.now(), period.power_on_at)
        period.power_off_by = by
        period.power_off_cause = cause
        period.save(update_fields=["power_off_at", "power_off_by", "power_off_cause"])
    return period


def _socket_command(*, socket: Socket, on: bool, by: str, cause: str) -> None:
    wanted = PowerState.ON if on else PowerState.OFF
    socket.desired_power, socket.desired_by, socket.desired_cause = wanted, by, cause
    socket.save(update_fields=["desired_power", "desired_by", "desired_cause"])
    try:
        reported = socket_driver(socket=socket).set_power(on)
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc
    if reported != on:
        raise SocketPowerFailed(f"{socket.name}: asked for {wanted}, the device reports {'ON' if reported else 'OFF'}", socket=socket.name)
    _socket_mark_seen(socket=socket, observed=wanted)


def _socket_mark_seen(*, socket: Socket, observed: str) -> None:
    socket.observed_power, socket.is_online, socket.last_seen_at, socket.last_error = observed, True, timezone.now(), ""
    socket.save(update_fields=["observed_power", "is_online", "last_seen_at", "last_error"])


def socket_set_emergency(*, socket: Socket, stopped: bool, by: str = "") -> Socket:
    """Set or lift the emergency lock. Requires the socket lock."""
    socket.is_emergency_stopped = stopped
    socket.emergency_stopped_at = timezone.now() if stopped else None
    socket.emergency_stopped_by = by if stopped else ""
    socket.save(update_fields=["is_emergency_stopped", "emergency_stopped_at", "emergency_stopped_by"])
    return socket


def socket_ensure_default() -> Socket:
    """Create or update the default socket from SMARTSOCKET_DEFAULT_SOCKET_* settings."""
    socket, _ = Socket.objects.update_or_create(
        name=settings.SMARTSOCKET_DEFAULT_SOCKET_NAME,
        defaults={
            "driver": settings.SMARTSOCKET_DEFAULT_SOCKET_DRIVER,
            "address": settings.SMARTSOCKET_DEFAULT_SOCKET_ADDRESS,
            "username": settings.SMARTSOCKET_DEFAULT_SOCKET_USERNAME,
            "password": settings.SMARTSOCKET_DEFAULT_SOCKET_PASSWORD,
        },
    )
    return socket


def socket_create(*, name: str, address: str, driver: str = "tasmota_http", username: str = "", password: str = "") -> Socket:
    return Socket.objects.create(name=name, address=address, driver=driver, username=username, password=password)
