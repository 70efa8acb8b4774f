"""Plug drivers, picked by a socket's `driver` field."""
from django.conf import settings

from .base import (
    DeviceAuthError, DeviceError, DeviceInfo, DeviceProtocolError, DeviceTimeout, DeviceUnreachable, DriverCapabilities, EnergyReading, SocketDriver,
    SWITCHED_BY_COMMAND, SWITCHED_BY_TIMER,
)
from .shelly_rpc import ShellyRpcDriver
from .tasmota_mqtt import TasmotaMqttDriver
from .tasmota_http import TasmotaHttpDriver

DRIVERS = {"tasmota_http": TasmotaHttpDriver, "tasmota_mqtt": TasmotaMqttDriver, "shelly_rpc": ShellyRpcDriver}

__all__ = [
    "DRIVERS", "SWITCHED_BY_COMMAND", "SWITCHED_BY_TIMER", "DeviceAuthError", "DeviceError", "DeviceInfo", "DeviceProtocolError", "DeviceTimeout", "DeviceUnreachable",
    "DriverCapabilities", "EnergyReading", "ShellyRpcDriver", "SocketDriver", "TasmotaHttpDriver", "TasmotaMqttDriver", "get_driver",
]


def get_driver(*, driver: str, address: str, channel: int = 1, username: str = "", password: str = "", quick: bool = False) -> SocketDriver:
    """Build the driver named `driver` for one relay of one device, with the configured timeouts (`quick`: at most 1 s each, for probes)."""
    try:
        cls = DRIVERS[driver]
    except KeyError:
        raise DeviceError(f"unknown driver {driver!r}") from None
    timeout = (settings.SMARTSOCKET_DEVICE_CONNECT_TIMEOUT, settings.SMARTSOCKET_DEVICE_READ_TIMEOUT)
    if quick:
        timeout = (min(timeout[0], 1.0), min(timeout[1], 1.0))
    return cls(address=address, channel=channel, username=username, password=password, timeout=timeout)
