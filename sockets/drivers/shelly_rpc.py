"""Shelly Gen2+ (Plus, Pro, Gen3, Gen4) over JSON-RPC on HTTP, as described in docs/device-protocols.md §3.1 and §6.4.

One relay is `switch:<channel - 1>`. Calls are the full-frame form, `POST /rpc {"id", "method",
"params"}`; with a password set on the device they need HTTP Digest auth (SHA-256, user `admin`),
which requests answers from the device's challenge. Energy comes in Wh (`aenergy.total`) and is
normalised to kWh like Tasmota's.
"""
import itertools
import math
import time

from requests.auth import HTTPDigestAuth

from .base import (
    SWITCHED_BY_COMMAND, SWITCHED_BY_TIMER, DeviceAuthError, DeviceInfo, DeviceProtocolError, DriverCapabilities, EnergyReading,
)
from .http import device_request
_call_ids = itertools.count(1)
# One digest-auth state per device and password, kept across calls: after the first challenge a call is one
# round trip (the device's nonce reused with a rising nonce count, firmware 2.0+); a stale nonce is re-challenged.
_auths: dict[tuple[str, str], HTTPDigestAuth] = {}

TOGGLE_AFTER_MAX_SECONDS = 64800.0  # `toggle_after` has no documented limit: the service re-arms within 18 h, as for Tasmota
# Switch status `source` → read_switch()'s names where they have one. An RPC call over HTTP is `HTTP_in` on current
# firmware (device captures, docs/device-protocols.md §6.4), `http` in older documentation (§3.1): both are ours.
SOURCES = {"timer": SWITCHED_BY_TIMER, "HTTP_in": SWITCHED_BY_COMMAND, "http": SWITCHED_BY_COMMAND}
# Switch config `initial_state` → what the relay does when the mains come back.
AFTER_POWER_LOSS = {"off": "off", "on": "on", "restore_last": "last", "match_input": "unknown"}


class ShellyRpcDriver:
    """Drives one switch (`channel` n: `id` n − 1) of a Shelly Gen2+ device."""

    # The on-device failsafe: `toggle_after` on Switch.Set (a flip-back timer for that call, not saved).
    failsafe_max_seconds = TOGGLE_AFTER_MAX_SECONDS
    off_timer_is_setting = False  # toggle_after belongs to one Switch.Set: every ON carries its own
    # Metering Shellys (Plus Plug S, Pro 4PM, …) measure each switch on its own.
    # Push: webhooks the service installs (switch.on / switch.off), given SMARTSOCKET_PUBLIC_URL.
    capabilities = DriverCapabilities(failsafe_timer=True, push=True, per_channel_energy=True, device_info=True)

    def __init__(self, *, address: str, channel: int = 1, username: str = "", password: str = "", timeout: tuple[float, float] = (2.0, 3.0)):
        self.address = address.rstrip("/") if "://" in address else f"http://{address.rstrip('/')}"
        self.channel, self.id = channel, channel - 1
        self.auth = _auths.setdefault((self.address, password), HTTPDigestAuth("admin", password)) if password else None  # user: always admin
        self.timeout = timeout

    def get_power(self) -> bool:
        return self._output(self._status())

    def read_switch(self) -> tuple[bool, str | None]:
        """The output and who switched it (`source`): `timer` (toggle_after or auto_off ran out: SWITCHED_BY_TIMER),
        `HTTP_in` or `http` (an RPC call over HTTP, this driver's transport: SWITCHED_BY_COMMAND), else the device's word —
        `WS_in` (another client's RPC over a WebSocket), `init` (start-up), a local input (`button`, `switch`, … by model)."""
        status = self._status()
        source = status.get("source")
        if not isinstance(source, str) or not source:
            return self._output(status), None
        return self._output(status), SOURCES.get(source, source)

    def set_power(self, on: bool, off_after: float | None = None) -> bool:
        """Switch; ON with `off_after` > 0 arms the flip-back timer in the same call (`toggle_after`).
        Shelly answers `{"was_on"}` once the output is set, so the state afterwards is the one asked for."""
        params = {"id": self.id, "on": on}
        if on and off_after:
            params["toggle_after"] = _toggle_after(off_after)
        answer = self._call("Switch.Set", params)
        if not isinstance(answer, dict) or "was_on" not in answer:
            raise DeviceProtocolError(f"{self.address}: unexpected Switch.Set answer: {str(answer)[:200]}")
        return on

    @staticmethod
    def off_timer_seconds(seconds: float) -> float:
        """The countdown the switch runs when asked for `seconds` (0: none)."""
        return float(_toggle_after(seconds)) if seconds > 0 else 0.0

    def arm_off_timer(self, seconds: float) -> float:
        """Move the flip-back timer of an ON switch to `seconds` from now (0: none) — `Switch.Set on:true` again,
        which never switches an OFF one ON: an OFF switch has nothing to arm (its next ON carries the timer)."""
        if not self._output(self._status()):
            return 0.0
        params = {"id": self.id, "on": True, **({"toggle_after": _toggle_after(seconds)} if seconds else {})}
        answer = self._call("Switch.Set", params)
        if isinstance(answer, dict) and answer.get("was_on") is False:
            # Switched OFF between the read and the set (a hand, the old timer): undo our ON, report no timer.
            self._call("Switch.Set", {"id": self.id, "on": False})
            return 0.0
        return float(_toggle_after(seconds)) if seconds else 0.0

    def read_off_timer(self) -> float:
        """Seconds left on the flip-back timer (0: none running), from the device's own clock."""
        status = self._status()
        started, duration = status.get("timer_started_at"), status.get("timer_duration")
        if started is None or duration is None:
            return 0.0
        try:
            return max(float(started) + float(duration) - time.time(), 0.0)
        except (TypeError, ValueError) as exc:
            raise DeviceProtocolError(f"{self.address}: unexpected timer in status: {str(status)[:200]}") from exc

    def read_after_power_loss(self) -> str:
        config = self._call("Switch.GetConfig", {"id": self.id})
        try:
            return AFTER_POWER_LOSS.get(config["initial_state"], "unknown")
        except (KeyError, TypeError) as exc:
            raise DeviceProtocolError(f"{self.address}: unexpected Switch.GetConfig answer: {str(config)[:200]}") from exc

    def set_off_after_power_loss(self) -> str:
        self._call("Switch.SetConfig", {"id": self.id, "config": {"initial_state": "off"}})
        return self.read_after_power_loss()

    def read_energy(self) -> EnergyReading:
        return _energy(self._status(), address=self.address)

    def read_state(self) -> tuple[bool, EnergyReading]:
        status = self._status()
        return self._output(status), _energy(status, address=self.address)

    def device_info(self) -> DeviceInfo:
        info = self._call("Shelly.GetDeviceInfo", {})
        try:
            return DeviceInfo(name=str(info.get("name") or info.get("model") or info["id"]), firmware=str(info.get("ver", info.get("fw_id", ""))),
                              hostname=str(info["id"]), mac=str(info.get("mac", "")))
        except (KeyError, AttributeError) as exc:
            raise DeviceProtocolError(f"{self.address}: not a Shelly Gen2+ device info: {str(info)[:200]}") from exc

    def install_push(self, *, name: str, urls: dict[str, str]) -> int:
        """Make this switch's webhooks for `urls` ({"switch.on": url, "switch.off": url}) exist, named `<name>-<event>`:
        created when missing, updated when their URL differs, left alone otherwise (idempotent). The hooks changed."""
        listed = self._call("Webhook.List", {})
        hooks = listed.get("hooks") if isinstance(listed, dict) else None
        if not isinstance(hooks, list):
            raise DeviceProtocolError(f"{self.address}: unexpected Webhook.List answer: {str(listed)[:200]}")
        changed = 0
        for event, url in urls.items():
            hook_name = f"{name}-{event}"
            hook = next((h for h in hooks if h.get("name") == hook_name and h.get("cid") == self.id), None)
            if hook is None:
                self._call("Webhook.Create", {"cid": self.id, "enable": True, "event": event, "name": hook_name, "urls": [url]})
            elif hook.get("urls") != [url] or not hook.get("enable"):
                self._call("Webhook.Update", {"id": hook["id"], "enable": True, "urls": [url]})
            else:
                continue
            changed += 1
        return changed

    def _status(self) -> dict:
        status = self._call("Switch.GetStatus", {"id": self.id})
        if not isinstance(status, dict):
            raise DeviceProtocolError(f"{self.address}: unexpected Switch.GetStatus answer: {str(status)[:200]}")
        return status

    def _output(self, status: dict) -> bool:
        output = status.get("output")
        if not isinstance(output, bool):
            raise DeviceProtocolError(f"{self.address}: no output in switch:{self.id} status: {str(status)[:200]}")
        return output

    def _call(self, method: str, params: dict):
        """One JSON-RPC call; its `result`, or the device's error as a DeviceError."""
        frame = {"id": next(_call_ids), "method": method, "params": params}
        response = device_request("POST", f"{self.address}/rpc", address=self.address, timeout=self.timeout, json=frame, auth=self.auth)
        if response.status_code == 401:
            raise DeviceAuthError(f"{self.address}: credentials refused (Shelly digest auth, user admin)")
        try:
            answer = response.json()
        except ValueError as exc:
            raise DeviceProtocolError(f"{self.address}: HTTP {response.status_code}, answer is not JSON: not a Shelly Gen2+ device?") from exc
        if not isinstance(answer, dict):
            raise DeviceProtocolError(f"{self.address}: answer is not a JSON-RPC frame")
        error = answer.get("error")
        if isinstance(error, dict):
            if error.get("code") == 401:
                raise DeviceAuthError(f"{self.address}: credentials refused: {error.get('message', '')}")
            raise DeviceProtocolError(f"{self.address}: {method} refused ({error.get('code')}): {str(error.get('message', ''))[:150]}")
        if response.status_code != 200 or "result" not in answer:
            raise DeviceProtocolError(f"{self.address}: HTTP {response.status_code}, no result: not a Shelly Gen2+ device?")
        return answer["result"]


def _toggle_after(seconds: float) -> int:
    """Whole seconds, at least the time asked for (never 0: that would be no timer)."""
    return max(1, math.ceil(round(min(seconds, TOGGLE_AFTER_MAX_SECONDS), 6)))


def _energy(status: dict, *, address: str) -> EnergyReading:
    """A Switch.GetStatus reading in the service's units (Shelly counts Wh; the service kWh)."""
    try:
        power, voltage, current = float(status["apower"]), float(status["voltage"]), float(status["current"])
        total_wh = float(status["aenergy"]["total"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DeviceProtocolError(f"{address}: no meter in switch status (not a metering Shelly?): {str(status)[:200]}") from exc
    apparent = voltage * current
    factor = float(status["pf"]) if isinstance(status.get("pf"), (int, float)) else (power / apparent if apparent else 0.0)
    return EnergyReading(
        power_w=power, apparent_power_va=apparent, reactive_power_var=math.sqrt(max(apparent**2 - power**2, 0.0)), power_factor=factor,
        voltage_v=voltage, current_a=current,
        today_kwh=0.0,  # Shelly keeps no day counter; the service never uses one (energy comes from `total`)
        total_kwh=total_wh / 1000,
    )
