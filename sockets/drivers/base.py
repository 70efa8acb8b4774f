"""The driver interface: what the service needs from a plug, and the faults it may raise."""
from dataclasses import dataclass
from typing import Protocol


class DeviceError(Exception):
    """The device did not do what was asked; callers must handle it."""


class DeviceUnreachable(DeviceError):
    """Timeout, refused connection, DNS failure."""


class DeviceTimeout(DeviceUnreachable):
    """No connection, or no answer, within the driver's timeout."""


class DeviceProtocolError(DeviceError):
    """HTTP error status, bad JSON, missing keys, a command the device rejected."""


class DeviceAuthError(DeviceProtocolError):
    """The device refused our credentials."""


@dataclass(frozen=True)
class EnergyReading:
    """One energy-meter reading, normalised to W, V, A and kWh."""

    power_w: float
    apparent_power_va: float
    reactive_power_var: float
    power_factor: float
    voltage_v: float
    current_a: float
    today_kwh: float
    total_kwh: float


@dataclass(frozen=True)
class DeviceInfo:
    """What a device says about itself."""

    name: str
    firmware: str
    hostname: str
    mac: str


class SocketDriver(Protocol):
    """What every plug driver offers; each method raises DeviceError on any fault."""

    failsafe_max_seconds: float  # the longest on-device off-timer (0: the device has none)

    def get_power(self) -> bool: ...

    def set_power(self, on: bool, off_after: float | None = None) -> bool: ...  # the state the device reports afterwards

    def arm_off_timer(self, seconds: float) -> float: ...  # the device switches itself off then (0: no timer)

    def read_off_timer(self) -> float: ...  # seconds left on it (0: not counting)

    def read_after_power_loss(self) -> str: ...  # "on", "off" or "last"

    def set_off_after_power_loss(self) -> str: ...

    def read_energy(self) -> EnergyReading: ...

    def read_state(self) -> tuple[bool, EnergyReading]: ...  # relay and meter in one device request

    def device_info(self) -> DeviceInfo: ...
