"""Configuration of sockets: the default socket from the environment, create, edit."""
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..drivers import DeviceError
from ..exceptions import SocketDeviceError
from ..models import Socket
from .power import socket_arm_failsafe, socket_driver, socket_lock

logger = logging.getLogger(__name__)


def socket_ensure_default() -> Socket:
    """Create or update the default socket from SMARTSOCKET_DEFAULT_SOCKET_* settings."""
    socket, _ = Socket.objects.update_or_create(
        name=settings.SMARTSOCKET_DEFAULT_SOCKET_NAME,
        defaults={
            "driver": settings.SMARTSOCKET_DEFAULT_SOCKET_DRIVER,
            "address": settings.SMARTSOCKET_DEFAULT_SOCKET_ADDRESS,
            "username": settings.SMARTSOCKET_DEFAULT_SOCKET_USERNAME,
            "password": settings.SMARTSOCKET_DEFAULT_SOCKET_PASSWORD,
            "max_on_seconds": settings.SMARTSOCKET_DEFAULT_SOCKET_MAX_ON,
        },
    )
    return socket


def socket_create(*, name: str, address: str, driver: str = "tasmota_http", username: str = "", password: str = "",
                  sample_interval_on: float | None = None, sample_interval_off: float | None = None, failsafe: bool = True,
                  max_on_seconds: float | None = None) -> Socket:
    return Socket.objects.create(
        name=name, address=address, driver=driver, username=username, password=password,
        sample_interval_on=sample_interval_on, sample_interval_off=sample_interval_off, failsafe=failsafe,
        max_on_seconds=max_on_seconds,
    )


SOCKET_CONFIG_FIELDS = ("name", "driver", "address", "username", "password", "sample_interval_on", "sample_interval_off", "failsafe",
                        "max_on_seconds")


def socket_set_off_after_power_loss(*, socket_id: int) -> Socket:
    """Make the plug stay OFF when the mains come back (Tasmota `PowerOnState 0`), and record what it now says.

    A saved device setting, not a relay command: no lock is needed. Raises SocketDeviceError.
    """
    socket = Socket.objects.get(pk=socket_id)
    try:
        after = socket_driver(socket=socket).set_off_after_power_loss()
    except DeviceError as exc:
        raise SocketDeviceError(f"{socket.name}: {exc}", socket=socket.name) from exc
    Socket.objects.filter(pk=socket_id).update(after_power_loss=after, after_power_loss_checked_at=timezone.now())
    socket.after_power_loss = after
    return socket


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
        failsafe_turned_off = socket.failsafe and config.get("failsafe") is False
        for field, value in config.items():
            setattr(socket, field, value)
        socket.save(update_fields=list(config))
        if failsafe_turned_off:  # a plug that must not have a timer loses the one it has now
            try:
                socket_arm_failsafe(socket=socket, force=True)
            except SocketDeviceError as exc:
                logger.warning("%s: failsafe turned off, the timer on the plug not cleared yet (its next Power On clears it): %s", socket.name, exc)
    return socket
