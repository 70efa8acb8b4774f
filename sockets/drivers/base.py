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


# read_switch(): who switched the relay last, where the device says. Its own off-timer (the failsafe, or an auto-off
# set on it), or a command over the driver's transport (the service's — or another client's on the same transport);
# anything else is the device's own word for a hand or its start-up (Shelly: `button`, `switch`, `init`, …).
SWITCHED_BY_TIMER = "timer"
SWITCHED_BY_COMMAND = "command"


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


@dataclass(frozen=True)
class DriverCapabilities:
    """What a driver can do, declared by it: the service asks rather than assumes (DESIGN §7)."""

    failsafe_timer: bool  # an on-device off-timer the service arms (Tasmota PulseTime, Shelly toggle_after)
    push: bool  # the device tells the service of a change at once (else: polling only)
    per_channel_energy: bool  # each relay has its own meter (else: one meter for the whole device)
    device_info: bool  # the device says what it is (model, firmware, MAC)

    def as_json(self) -> dict:
        return {"failsafeTimer": self.failsafe_timer, "push": self.push, "perChannelEnergy": self.per_channel_energy, "deviceInfo": self.device_info}


class SocketDriver(Protocol):
    """What every plug driver offers, for one relay (`channel`, from 1) of one device; each method raises DeviceError on any fault."""

    failsafe_max_seconds: float  # the longest on-device off-timer (0: the device has none)
    off_timer_is_setting: bool  # the timer is a saved setting every ON restarts (else each ON carries its own)
    capabilities: DriverCapabilities

    def get_power(self) -> bool: ...

    # The relay, and who switched it last as the device reports it (SWITCHED_BY_TIMER, SWITCHED_BY_COMMAND or the
    # device's own word: Shelly's `source`); None where the device does not say (Tasmota: a press looks like any command).
    def read_switch(self) -> tuple[bool, str | None]: ...

    def set_power(self, on: bool, off_after: float | None = None) -> bool: ...  # the state the device reports afterwards

    def off_timer_seconds(self, seconds: float) -> float: ...  # the countdown the device holds when asked for `seconds`

    def arm_off_timer(self, seconds: float) -> float: ...  # the device switches itself off then (0: no timer)

    def read_off_timer(self) -> float: ...  # seconds left on it (0: not counting)

    def read_after_power_loss(self) -> str: ...  # "on", "off" or "last"

    def set_off_after_power_loss(self) -> str: ...

    def read_energy(self) -> EnergyReading: ...

    def read_state(self) -> tuple[bool, EnergyReading]: ...  # relay and meter in one device request

    def device_info(self) -> DeviceInfo: ...
