"""Power, samples, the emergency lock and configuration of a socket: every state change a request makes."""
import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..drivers import DeviceError, EnergyReading, SocketDriver, get_driver
from ..exceptions import SocketDeviceError, SocketPowerFailed
from ..models import EnergySample, PowerCause, PowerPeriod, PowerState, Socket
from ..selectors import power_period_get_open


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
        socket_record_fault(socket_id=socket.pk, error=exc)
        raise


def socket_record_fault(*, socket_id: int, error: Exception) -> None:
    """After a failed device command: relay state UNKNOWN (for reconcile), online only if it answered."""
    Socket.objects.filter(pk=socket_id).update(
        observed_power=PowerState.UNKNOWN,
        is_online=isinstance(error, SocketPowerFailed),
        last_error=str(error)[:255],
    )


def socket_read_energy(*, socket: Socket) -> EnergyReading:
    """Read the socket's meter. Raises SocketDeviceError."""
    try:
        return socket_driver(socket=socket).read_energy()
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc


def energy_sample_record(*, socket: Socket, reading: EnergyReading, is_on: bool | None = None, taken_at: datetime | None = None) -> EnergySample:
    """Store a reading, with the relay state read with it (else the one last confirmed for the socket)."""
    return EnergySample.objects.create(
        socket=socket,
        taken_at=taken_at or timezone.now(),
        is_on=is_on if is_on is not None else {PowerState.ON: True, PowerState.OFF: False}.get(socket.observed_power),
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
    socket_set_desired(socket=socket, on=on, by=by, cause=cause)
    try:
        reported = socket_driver(socket=socket).set_power(on)
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc
    if reported != on:
        raise SocketPowerFailed(f"{socket.name}: asked for {wanted}, the device reports {'ON' if reported else 'OFF'}", socket=socket.name)
    socket_mark_seen(socket=socket, observed=wanted)


def socket_set_desired(*, socket: Socket, on: bool, by: str, cause: str) -> None:
    """Record the power the socket must have, for whom and why (reconcile's target). Requires the socket lock."""
    socket.desired_power, socket.desired_by, socket.desired_cause = PowerState.ON if on else PowerState.OFF, by, cause
    socket.save(update_fields=["desired_power", "desired_by", "desired_cause"])


def socket_probe(*, socket: Socket) -> bool:
    """Whether the device answers; ask it without the socket lock, so a dead plug never holds the lock."""
    try:
        socket_driver(socket=socket).get_power()
    except DeviceError:
        return False
    return True


def socket_sample_interval(*, socket: Socket, on: bool) -> float:
    """Seconds between two samples of `socket` while its relay is ON (or OFF)."""
    if on:
        return socket.sample_interval_on or settings.SMARTSOCKET_SAMPLE_INTERVAL_ON
    return socket.sample_interval_off or settings.SMARTSOCKET_SAMPLE_INTERVAL_OFF


def socket_mark_seen(*, socket: Socket, observed: str) -> None:
    socket.observed_power, socket.is_online, socket.last_seen_at, socket.last_error = observed, True, timezone.now(), ""
    fields = ["observed_power", "is_online", "last_seen_at", "last_error"]
    if observed == PowerState.ON:  # sample at the ON pace from now on, not after the slower OFF interval
        first = socket.last_seen_at + timedelta(seconds=socket_sample_interval(socket=socket, on=True))
        if socket.next_sample_at is None or socket.next_sample_at > first:
            socket.next_sample_at = first
            fields.append("next_sample_at")
    socket.save(update_fields=fields)


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


def socket_create(*, name: str, address: str, driver: str = "tasmota_http", username: str = "", password: str = "",
                  sample_interval_on: float | None = None, sample_interval_off: float | None = None) -> Socket:
    return Socket.objects.create(
        name=name, address=address, driver=driver, username=username, password=password,
        sample_interval_on=sample_interval_on, sample_interval_off=sample_interval_off,
    )


SOCKET_CONFIG_FIELDS = ("name", "driver", "address", "username", "password", "sample_interval_on", "sample_interval_off")


def socket_update(*, socket_id: int, **config: str) -> Socket:
    """Change a socket's configuration (SOCKET_CONFIG_FIELDS) under its lock.

    Only the given fields are written, so a concurrent power change or emergency stop is
    never overwritten with what the editor's form had read.
    """
    unknown = set(config) - set(SOCKET_CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"not socket configuration: {sorted(unknown)}")
    with transaction.atomic():
        socket = socket_lock(socket_id=socket_id)
        for field, value in config.items():
            setattr(socket, field, value)
        socket.save(update_fields=list(config))
    return socket
