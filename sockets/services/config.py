"""Configuration of sockets: the default socket from the environment, create, edit."""
import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.actors import Actor
from audit.ledger import ledger_atomic, ledger_record
from audit.models import EventKind

from ..drivers import DRIVERS, DeviceError, DeviceInfo
from ..exceptions import SocketDeviceError
from ..models import Socket
from .power import socket_arm_failsafe, socket_driver, socket_lock

logger = logging.getLogger(__name__)


SOCKET_CONFIG_FIELDS = ("name", "driver", "address", "channel", "username", "password", "sample_interval_on", "sample_interval_off",
                        "failsafe", "max_on_seconds")
SECRET_FIELDS = {"password"}
REDACTED = "<redacted>"


def socket_ensure_default() -> Socket:
    """Create or update the default socket from SMARTSOCKET_DEFAULT_SOCKET_* settings (a change is recorded, by the service)."""
    config = {
        "driver": settings.SMARTSOCKET_DEFAULT_SOCKET_DRIVER,
        "address": settings.SMARTSOCKET_DEFAULT_SOCKET_ADDRESS,
        "channel": settings.SMARTSOCKET_DEFAULT_SOCKET_CHANNEL,
        "username": settings.SMARTSOCKET_DEFAULT_SOCKET_USERNAME,
        "password": settings.SMARTSOCKET_DEFAULT_SOCKET_PASSWORD,
        "max_on_seconds": settings.SMARTSOCKET_DEFAULT_SOCKET_MAX_ON,
    }
    socket = Socket.objects.filter(name=settings.SMARTSOCKET_DEFAULT_SOCKET_NAME).first()
    if socket is None:
        return socket_create(name=settings.SMARTSOCKET_DEFAULT_SOCKET_NAME, source="environment", **config)
    return socket_update(socket_id=socket.pk, source="environment", **config)


def socket_create(*, name: str, address: str, driver: str = "tasmota_http", channel: int = 1, username: str = "", password: str = "",
                  sample_interval_on: float | None = None, sample_interval_off: float | None = None, failsafe: bool = True,
                  max_on_seconds: float | None = None, actor: Actor | None = None, source: str = "") -> Socket:
    """Create a socket; recorded with its configuration (secrets redacted)."""
    config = {"name": name, "address": address, "driver": driver, "channel": channel, "username": username, "password": password,
              "sample_interval_on": sample_interval_on, "sample_interval_off": sample_interval_off, "failsafe": failsafe,
              "max_on_seconds": max_on_seconds}
    with ledger_atomic():
        socket = Socket.objects.create(**config, push_secret=secrets.token_urlsafe(24))
        _socket_config_event(socket=socket, changes={field: [None, value] for field, value in config.items()}, actor=actor,
                             created=True, source=source)
        transaction.on_commit(lambda: socket_install_push(socket=socket))
    return socket


PUSH_FIELDS = {"driver", "address", "channel", "password"}  # a change of these moves the webhooks
DEVICE_FIELDS = {"driver", "address", "channel"}  # a change of these points the socket at another relay


def socket_install_push(*, socket: Socket) -> bool:
    """Install (or bring up to date) the device's webhooks to this service's push endpoint, where the driver has them
    and SMARTSOCKET_PUBLIC_URL is set. After the change is committed; never fails it: a device that does not answer
    is logged, and polling stays the backstop. True when the device has the webhooks now."""
    if not settings.SMARTSOCKET_PUBLIC_URL or not hasattr(DRIVERS.get(socket.driver), "install_push"):
        return False
    if not socket.push_secret:  # a socket from before push: its secret now (one writer wins; everyone uses the winner's)
        Socket.objects.filter(pk=socket.pk, push_secret="").update(push_secret=secrets.token_urlsafe(24))
        socket.push_secret = Socket.objects.values_list("push_secret", flat=True).get(pk=socket.pk)
    base = f"{settings.SMARTSOCKET_PUBLIC_URL}/api/push/shelly/{socket.push_secret}"
    try:
        changed = socket_driver(socket=socket).install_push(name=f"smartsocket-{socket.pk}", urls={"switch.on": f"{base}?output=on", "switch.off": f"{base}?output=off"})
    except DeviceError as exc:
        logger.warning("%s: webhooks not installed (polling only until the next edit): %s", socket.name, exc)
        return False
    if changed:
        logger.info("%s: %d webhooks installed to %s", socket.name, changed, settings.SMARTSOCKET_PUBLIC_URL)
    return True


def _socket_config_event(*, socket: Socket, changes: dict, actor: Actor | None, created: bool = False, source: str = "") -> None:
    """socket.config with a field-level diff {field: [before, after]}; a secret shows only that it changed."""
    diff = {field: ([REDACTED if before else "", REDACTED if after else ""] if field in SECRET_FIELDS else [before, after])
            for field, (before, after) in changes.items()}
    ledger_record(kind=EventKind.SOCKET_CONFIG, socket_id=socket.pk, reason="created" if created else "changed", actor=actor,
                  data={"changes": diff, **({"source": source} if source else {})})


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


def socket_update(*, socket_id: int, actor: Actor | None = None, source: str = "", **config) -> Socket:
    """Change a socket's configuration (SOCKET_CONFIG_FIELDS) under its lock; what changed is recorded.

    Only the given fields are written, so a concurrent power change or emergency stop is
    never overwritten with what the editor's form had read.
    """
    unknown = set(config) - set(SOCKET_CONFIG_FIELDS)
    if unknown:
        raise TypeError(f"not socket configuration: {sorted(unknown)}")
    with ledger_atomic():
        socket = socket_lock(socket_id=socket_id)
        failsafe_turned_off = socket.failsafe and config.get("failsafe") is False
        changes = {field: [getattr(socket, field), value] for field, value in config.items() if getattr(socket, field) != value}
        if not changes:
            return socket
        for field, value in config.items():
            setattr(socket, field, value)
        fields = list(changes)
        if DEVICE_FIELDS & set(changes):  # another device (or relay): what its off-timer is set to is not known
            socket.failsafe_preset_seconds = None
            fields.append("failsafe_preset_seconds")
        socket.save(update_fields=fields)
        _socket_config_event(socket=socket, changes=changes, actor=actor, source=source)
        if PUSH_FIELDS & set(changes):
            transaction.on_commit(lambda: socket_install_push(socket=socket))
        if failsafe_turned_off:  # a plug that must not have a timer loses the one it has now
            try:
                socket_arm_failsafe(socket=socket, force=True)
            except SocketDeviceError as exc:
                logger.warning("%s: failsafe turned off, the timer on the plug not cleared yet (its next Power On clears it): %s", socket.name, exc)
    return socket


@dataclass(frozen=True)
class ConnectionTest:
    info: DeviceInfo
    on: bool
    seconds: float


def socket_test_connection(*, socket: Socket) -> ConnectionTest:
    """Read the device's identity and this channel's relay, as a check before anyone relies on the socket.
    Nothing is switched or recorded. Raises DeviceError with the precise fault (auth refused, timed out after
    N s, refused, not the device the driver speaks to)."""
    started = time.monotonic()
    driver = socket_driver(socket=socket)
    info = driver.device_info()
    on = driver.get_power()
    return ConnectionTest(info=info, on=on, seconds=time.monotonic() - started)
