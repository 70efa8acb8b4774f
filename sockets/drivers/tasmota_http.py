"""Tasmota over HTTP (`GET /cm?cmnd=...`), as described in docs/device-protocols.md."""
import math

from .base import DeviceAuthError, DeviceInfo, DeviceProtocolError, DriverCapabilities, EnergyReading
from .http import device_request


PULSE_TIME_MAX_SECONDS = 64800.0  # PulseTime 64900: 18 h


def pulse_time_value(seconds: float) -> int:
    """The PulseTime value whose countdown lasts at least `seconds` (0.1 s steps to 11.1 s, then seconds; at most 18 h)."""
    if seconds <= 11.1:
        return max(1, math.ceil(round(seconds * 10, 6)))
    return min(math.ceil(round(seconds, 6)), int(PULSE_TIME_MAX_SECONDS)) + 100


def pulse_time_seconds(value: int) -> float:
    return value / 10 if value <= 111 else float(value - 100)


# PowerOnState → what the relay does when the mains come back (docs/device-protocols.md §6.2).
AFTER_POWER_LOSS = {0: "off", 1: "on", 2: "on", 3: "last", 4: "on", 5: "on"}


class TasmotaHttpDriver:
    """Drives one relay (`channel` n: `Power<n>`, `PulseTime<n>`) of a Tasmota plug or strip through its HTTP command API."""

    # The on-device failsafe: PulseTime<n>, the longest countdown it can hold.
    failsafe_max_seconds = PULSE_TIME_MAX_SECONDS
    # PulseTime is a saved setting every `Power On` restarts: set once, it need not be sent with each ON.
    off_timer_is_setting = True
    # One meter per device on most Tasmota plugs and strips; readings given per relay (arrays) are taken for the channel.
    capabilities = DriverCapabilities(failsafe_timer=True, push=False, per_channel_energy=False, device_info=True)

    def __init__(self, *, address: str, channel: int = 1, username: str = "", password: str = "", timeout: tuple[float, float] = (2.0, 3.0)):
        self.address = address.rstrip("/") if "://" in address else f"http://{address.rstrip('/')}"
        self.channel = channel
        self.index = "" if channel == 1 else str(channel)  # `Power` is `Power1`: channel 1 keeps the plain form
        self.auth = (username or "admin", password) if password else None
        self.timeout = timeout

    def get_power(self) -> bool:
        """Read the relay state."""
        return self._parse_power(self._command(f"Power{self.index}"))

    def read_switch(self) -> tuple[bool, None]:
        """The relay; Tasmota does not say who switched it (a press answers like any command)."""
        return self.get_power(), None

    def set_power(self, on: bool, off_after: float | None = None) -> bool:
        """Switch the relay and return the state the device reports.

        `off_after` (ON only): first set the plug's own off-timer (PulseTime) to at least that
        many seconds, 0 for none, so `Power On` starts it; None leaves the timer as it is.
        `Power Off` cancels a running countdown.
        """
        if on and off_after is not None:
            self.arm_off_timer(off_after)
        return self._parse_power(self._command(f"Power{self.index} {'On' if on else 'Off'}"))

    @staticmethod
    def off_timer_seconds(seconds: float) -> float:
        """The countdown the plug holds when asked for `seconds` (PulseTime's steps; 0: none)."""
        return pulse_time_seconds(pulse_time_value(seconds)) if seconds > 0 else 0.0

    def arm_off_timer(self, seconds: float) -> float:
        """Set PulseTime so the relay switches itself off `seconds` from now (0: no timer); the seconds armed."""
        value = pulse_time_value(seconds) if seconds > 0 else 0
        answer = self._command(f"PulseTime{self.index} {value}")
        block = answer.get(f"PulseTime{self.channel}", answer.get("PulseTime"))
        if not isinstance(block, dict) or _first(block.get("Set")) != value:
            raise DeviceProtocolError(f"{self.address}: PulseTime {value} not taken: {str(answer)[:200]}")
        return pulse_time_seconds(value) if value else 0.0

    def read_off_timer(self) -> float:
        """Seconds left on the PulseTime countdown (0: not counting). A read: nothing is saved on the device."""
        answer = self._command(f"PulseTime{self.channel}")
        try:
            return pulse_time_seconds(int(_first(answer[f"PulseTime{self.channel}"]["Remaining"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DeviceProtocolError(f"{self.address}: unexpected PulseTime answer: {str(answer)[:200]}") from exc

    def read_after_power_loss(self) -> str:
        """What the relay does when the mains come back: "on", "off" or "last" (PowerOnState)."""
        answer = self._command("PowerOnState")
        try:
            return AFTER_POWER_LOSS[int(answer["PowerOnState"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise DeviceProtocolError(f"{self.address}: unexpected PowerOnState answer: {str(answer)[:200]}") from exc

    def set_off_after_power_loss(self) -> str:
        """Make the relay stay OFF when the mains come back (PowerOnState 0)."""
        self._command("PowerOnState 0")
        return self.read_after_power_loss()

    def read_energy(self) -> EnergyReading:
        """Read the energy meter (`Status 10`)."""
        return parse_energy(self._command("Status 10"), channel=self.channel)

    def read_state(self) -> tuple[bool, EnergyReading]:
        """Read relay and meter in one request (`Status 0`: StatusSTS.POWER and StatusSNS.ENERGY)."""
        answer = self._command("Status 0")
        return self._parse_power(answer.get("StatusSTS") if isinstance(answer.get("StatusSTS"), dict) else {}), parse_energy(answer, channel=self.channel)

    def device_info(self) -> DeviceInfo:
        """Read name, firmware and network identity (`Status 0`)."""
        answer = self._command("Status 0")
        try:
            net = answer.get("StatusNET", {})
            return DeviceInfo(
                name=str(answer["Status"].get("DeviceName", "")),
                firmware=str(answer.get("StatusFWR", {}).get("Version", "")),
                hostname=str(net.get("Hostname", "")),
                mac=str(net.get("Mac", "")),
            )
        except (KeyError, AttributeError) as exc:
            raise DeviceProtocolError(f"unexpected status answer: {str(answer)[:200]}") from exc

    def _command(self, cmnd: str) -> dict:
        """Send one console command and return the device's JSON answer."""
        response = device_request(
            "GET", f"{self.address}/cm", address=self.address, timeout=self.timeout, params={"cmnd": cmnd},
            # Tasmota 15.5+ closes the connection on /cm without a matching Referer.
            headers={"Referer": f"{self.address}/"}, auth=self.auth,
        )
        if response.status_code == 401:
            raise DeviceAuthError(f"{self.address}: credentials refused")
        if response.status_code != 200:
            raise DeviceProtocolError(f"{self.address}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise DeviceProtocolError(f"{self.address}: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise DeviceProtocolError(f"{self.address}: answer is not a JSON object")
        if "WARNING" in answer:  # old firmware answers auth failures with 200
            raise DeviceAuthError(f"{self.address}: {answer['WARNING']}")
        if answer.get("Command") in ("Unknown", "Error"):
            raise DeviceProtocolError(f"{self.address}: command {cmnd!r} rejected")
        return answer

    def _parse_power(self, answer: dict) -> bool:
        """This channel's state: `POWER<n>` on a device with several relays, `POWER` (or `POWER1`) on a one-relay device."""
        value = answer.get(f"POWER{self.channel}")
        if value is None and self.channel == 1:
            value = answer.get("POWER")
        if value not in ("ON", "OFF"):
            raise DeviceProtocolError(f"{self.address}: no POWER{self.channel} in answer (a relay the device has?): {str(answer)[:200]}")
        return value == "ON"


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def parse_energy(answer: dict, *, channel: int = 1) -> EnergyReading:
    """The meter reading; a value the firmware gives per relay (an array) is taken for `channel`."""
    def value(energy: dict, key: str, default=None) -> float:
        figure = energy[key] if default is None else energy.get(key, default)
        return float(figure[channel - 1] if isinstance(figure, list) else figure)

    try:
        energy = answer["StatusSNS"]["ENERGY"]
        return EnergyReading(
            power_w=value(energy, "Power"),
            apparent_power_va=value(energy, "ApparentPower", 0),
            reactive_power_var=value(energy, "ReactivePower", 0),
            power_factor=value(energy, "Factor", 0),
            voltage_v=value(energy, "Voltage"),
            current_a=value(energy, "Current"),
            today_kwh=value(energy, "Today"),
            total_kwh=value(energy, "Total"),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DeviceProtocolError(f"unexpected energy answer: {str(answer)[:200]}") from exc
