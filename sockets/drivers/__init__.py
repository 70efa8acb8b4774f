"""Plug drivers, picked by a socket's `driver` field."""
from django.conf import settings

from .base import DeviceAuthError, DeviceError, DeviceInfo, DeviceProtocolError, DeviceTimeout, DeviceUnreachable, EnergyReading, SocketDriver
from .tasmota_http import TasmotaHttpDriver

DRIVERS = {"tasmota_http": TasmotaHttpDriver}

__all__ = [
    "DRIVERS", "DeviceAuthError", "DeviceError", "DeviceInfo", "DeviceProtocolError",
    "DeviceTimeout", "DeviceUnreachable", "EnergyReading", "SocketDriver", "TasmotaHttpDriver", "get_driver",
]


def get_driver(*, driver: str, address: str, username: str = "", password: str = "", quick: bool = False) -> SocketDriver:
    """Build the driver named `driver` for one device, with the configured timeouts (`quick`: at most 1 s each, for probes)."""
    try:
        cls = DRIVERS[driver]
    except KeyError:
        raise DeviceError(f"unknown driver {driver!r}") from None
    timeout = (settings.SMARTSOCKET_DEVICE_CONNECT_TIMEOUT, settings.SMARTSOCKET_DEVICE_READ_TIMEOUT)
    if quick:
        timeout = (min(timeout[0], 1.0), min(timeout[1], 1.0))
    return cls(address=address, username=username, password=password, timeout=timeout)
