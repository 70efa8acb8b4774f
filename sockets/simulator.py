"""A simulated single-relay Tasmota energy plug speaking the Tasmota HTTP API (docs/device-protocols.md §1)."""
import base64
import binascii
import json
import math
import re
import socketserver
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FIRMWARE = "14.4.1(tasmota)"
MAC = "A4:CF:12:5C:1A:7E"
HOSTNAME = "tasmota-5C1A7E-6782"
TOPIC = "tasmota_5C1A7E"
IP_ADDRESS = "127.0.0.1"
INITIAL_TOTAL_KWH = 12.345
TOTAL_START_TIME = "2024-11-02T16:55:59"
HANG_SECONDS = 30.0
FAULT_KINDS = (None, "timeout", "http500", "garbage", "refuse", "wrong_state")
TRANSPORT_FAULTS = ("timeout", "http500", "garbage")
PULSE_TIMERS = 32
STATUS_KEYS = {1: "StatusPRM", 2: "StatusFWR", 3: "StatusLOG", 4: "StatusMEM", 5: "StatusNET", 6: "StatusMQT",
               7: "StatusTIM", 8: "StatusSNS", 9: "StatusPTH", 10: "StatusSNS", 11: "StatusSTS"}
STATUS_ALL = ("Status", "StatusPRM", "StatusFWR", "StatusLOG", "StatusMEM", "StatusNET", "StatusMQT", "StatusTIM",
              "StatusPTH", "StatusSNS", "StatusSTS")
STATE_WORDS = {"off": 0, "false": 0, "stop": 0, "on": 1, "true": 1, "start": 1, "toggle": 2}
ERROR = {"Command": "Error"}


@dataclass(frozen=True)
class Fixed:
    """A number rendered with a fixed count of decimals, as Tasmota prints `"Total":0.000`."""

    value: float
    decimals: int


def to_json(value) -> str:
    """Serialise like Tasmota: compact, keys in order, `Fixed` numbers with their decimals."""
    if isinstance(value, Fixed):
        return f"{value.value:.{value.decimals}f}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def decode_pulse(value: int) -> float:
    """Seconds for a PulseTime value: 1..111 are tenths of a second, above that value - 100 s."""
    return value / 10 if value <= 111 else value - 100


def encode_pulse(seconds: float) -> int:
    """PulseTime encoding of a remaining time, as the device reports `Remaining`."""
    tenths = math.ceil(round(seconds * 10, 6))
    return tenths if tenths <= 111 else tenths // 10 + 100


def local_time(wall: float | None = None) -> str:
    """Tasmota's local time format, without a UTC offset."""
    return datetime.fromtimestamp(time.time() if wall is None else wall).strftime("%Y-%m-%dT%H:%M:%S")


def on_throughout(transitions: list[tuple[float, bool, str]], *, initial: bool, t0: float, t1: float) -> bool:
    """From a relay's changes `(time.time(), new_state, source)` and its state before them: ON during all of [t0, t1]."""
    state = initial
    for at, new_state, _source in transitions:
        if at <= t0:
            state = new_state
        elif at <= t1 and not new_state:
            return False
    return state


class PlugSimulator:
    """Thread-safe state of one simulated plug: relay, PulseTime, energy meter, faults, command record."""

    # Energy and the PulseTime countdown are brought up to date lazily (`_advance`) on every
    # read or change, so the pulse expires at its exact deadline even when nobody is looking.

    def __init__(self, *, device_name="Lab Plug", load_w=60.0, voltage=230.0, power_factor=0.95,
                 initial_power=False, username=None, password=None, require_referer=False):
        self._lock = threading.RLock()
        self._fault_listeners = []
        self.device_name = device_name
        self.voltage = voltage
        self.power_factor = power_factor
        self.username = username or "admin"
        self.password = password
        self.require_referer = require_referer
        self.latency = 0.0
        self._load_w = load_w
        self._started = time.monotonic()
        self._last = self._started
        self._day = date.today()
        self._today_kwh = 0.0
        self._yesterday_kwh = 0.0
        self._total_kwh = INITIAL_TOTAL_KWH
        self._pulse_set = 0
        self._pulse_deadline = None
        self.power_on_state = 3  # the firmware default: after a mains outage the relay comes back as it was
        self._fault = None
        self._fault_count = None
        self._fault_only = ""
        self._reset_records(initial_power)

    def _reset_records(self, power: bool) -> None:
        self._on = power
        self._initial_power = power
        self._commands = []
        self._transitions = []
        self._power_on_commands = 0
        self._power_off_commands = 0

    # -- observation ---------------------------------------------------------------------------

    @property
    def is_on(self) -> bool:
        """Whether the relay is on now."""
        with self._lock:
            self._advance()
            return self._on

    @property
    def load_w(self) -> float:
        """Active power drawn while the relay is on."""
        return self._load_w

    @load_w.setter
    def load_w(self, watts: float) -> None:
        with self._lock:
            self._advance()
            self._load_w = float(watts)

    @property
    def commands(self) -> list[str]:
        """Every non-empty cmnd received on /cm after the access checks, in order (also those a fault swallowed)."""
        with self._lock:
            return list(self._commands)

    @property
    def transitions(self) -> list[tuple[float, bool, str]]:
        """Every actual relay change as `(time.time(), new_state, source)`."""
        with self._lock:
            self._advance()
            return list(self._transitions)

    @property
    def power_on_commands(self) -> int:
        """Applied Power commands that asked for ON (toggles count by their result)."""
        with self._lock:
            return self._power_on_commands

    @property
    def power_off_commands(self) -> int:
        """Applied Power commands that asked for OFF (toggles count by their result)."""
        with self._lock:
            return self._power_off_commands

    @property
    def fault(self) -> str | None:
        """The active fault kind, or None."""
        with self._lock:
            return self._fault

    def energy_kwh(self) -> tuple[float, float]:
        """Current `(today, total)` energy in kWh, unrounded."""
        with self._lock:
            self._advance()
            return self._today_kwh, self._total_kwh

    def was_on_throughout(self, t0: float, t1: float) -> bool:
        """True iff the relay was on during the whole wall-clock interval [t0, t1]."""
        with self._lock:
            self._advance()
            return on_throughout(self._transitions, initial=self._initial_power, t0=t0, t1=t1)

    def snapshot(self) -> dict:
        """Plain-JSON state for the /sim/state endpoint."""
        with self._lock:
            self._advance()
            return {
                "power": "ON" if self._on else "OFF",
                "load_w": self._load_w,
                "today": round(self._today_kwh, 6),
                "total": round(self._total_kwh, 6),
                "pulse_time": self._pulse_set,
                "pulse_remaining_s": round(self._pulse_deadline - time.monotonic(), 3) if self._pulse_deadline else 0,
                "power_on_state": self.power_on_state,
                "fault": self._fault,
                "fault_count": self._fault_count,
                "commands": len(self._commands),
                "power_on_commands": self._power_on_commands,
                "power_off_commands": self._power_off_commands,
                "transitions": [list(t) for t in self._transitions],
            }

    # -- control -------------------------------------------------------------------------------

    @property
    def pulse_remaining_s(self) -> float:
        """Seconds until the PulseTime countdown switches the relay off (0: not counting)."""
        with self._lock:
            self._advance()
            return max(self._pulse_deadline - time.monotonic(), 0.0) if self._pulse_deadline is not None else 0.0

    @property
    def pulse_set(self) -> int:
        """The configured PulseTime value (the device's encoding; 0 = none)."""
        with self._lock:
            return self._pulse_set

    def mains_cycle(self) -> bool:
        """The mains drop and come back: the relay comes up as PowerOnState says (0/5 off, 1/4 on, 2 toggled, 3 as it was)."""
        with self._lock:
            self._advance()
            was_on = self._on
            self._switch(False, "mains")
            up = {0: False, 1: True, 2: not was_on, 3: was_on, 4: True, 5: False}[self.power_on_state]
            if up:
                self._switch(True, "mains")
            return self._on

    def press_button(self) -> bool:
        """Toggle the relay like the physical button and return the new state."""
        with self._lock:
            self._advance()
            self._switch(not self._on, "button")
            return self._on

    def set_fault(self, kind: str | None, count: int | None = None, only: str | None = None) -> None:
        """Inject a fault for the next `count` /cm requests it applies to (None = until cleared).

        `only` limits a transport fault to commands starting with that text (case-insensitive),
        e.g. "Power On", to fail one step of a sequence. "refuse" closes the listening socket
        and cannot be count-limited; "wrong_state" is only spent by switching Power commands.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
        if count is not None and (kind in (None, "refuse") or count < 1):
            raise ValueError(f"count={count!r} is not valid for fault {kind!r}")
        with self._lock:
            self._fault, self._fault_count, self._fault_only = kind, count, (only or "").lower()
        self._notify_fault(kind)

    def clear_fault(self) -> None:
        """Remove any injected fault."""
        self.set_fault(None)

    def reset(self) -> None:
        """Return to OFF with no PulseTime, latency, fault or records; energy counters keep counting."""
        with self._lock:
            self._advance()
            self._reset_records(False)
            self._pulse_set = 0
            self._pulse_deadline = None
            self._fault, self._fault_count, self._fault_only = None, None, ""
            self.latency = 0.0
        self._notify_fault(None)

    def add_fault_listener(self, callback) -> None:
        """Call `callback(kind)` after set_fault/clear_fault/reset (the server uses it for "refuse")."""
        with self._lock:
            self._fault_listeners.append(callback)

    def remove_fault_listener(self, callback) -> None:
        """Undo `add_fault_listener`."""
        with self._lock:
            self._fault_listeners.remove(callback)

    def _notify_fault(self, kind: str | None) -> None:
        with self._lock:
            listeners = list(self._fault_listeners)
        for callback in listeners:
            callback(kind)

    # -- the HTTP API --------------------------------------------------------------------------

    def allows_referer(self, referer: str | None) -> bool:
        """The SetOption128 0 check: the Referer must name the device."""
        if not self.require_referer:
            return True
        return bool(referer) and referer.startswith((f"http://{IP_ADDRESS}", f"http://{HOSTNAME}"))

    def authenticates(self, query: dict[str, str], authorization: str | None) -> bool:
        """The WebPassword check: `user`/`password` query parameters, else HTTP Basic."""
        if not self.password:
            return True
        if query.get("user") == self.username and query.get("password") == self.password:
            return True
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.username}:{self.password}"

    def receive(self, cmnd: str) -> str | None:
        """Record an accepted /cm request and return the transport fault it suffers, if any."""
        with self._lock:
            if cmnd:
                self._commands.append(cmnd)
            kind = self._fault
            if kind not in TRANSPORT_FAULTS or not cmnd.lower().startswith(self._fault_only):
                return None
            self._spend_fault()
            return kind

    def _spend_fault(self) -> None:
        """Use up one count of the active fault, clearing it after the last one."""
        if self._fault_count is None:
            return
        self._fault_count -= 1
        if not self._fault_count:
            self._fault, self._fault_count = None, None

    def execute(self, cmnd: str) -> dict:
        """Run one console command and return the JSON object the device answers."""
        word, _, arg = cmnd.strip().partition(" ")
        match = re.fullmatch(r"([A-Za-z_]+)(\d*)", word)
        if not match:
            return {"Command": "Unknown"}
        name, index = match.group(1).lower(), int(match.group(2)) if match.group(2) else None
        handler = {"power": self._cmd_power, "status": self._cmd_status, "state": self._cmd_state,
                   "pulsetime": self._cmd_pulsetime, "devicename": self._cmd_devicename,
                   "poweronstate": self._cmd_poweronstate}.get(name)
        if handler is None:
            return {"Command": "Unknown"}
        arg = arg.strip()
        with self._lock:
            self._advance()
            return handler(index, "" if arg == "?" else arg)

    def _cmd_power(self, index, arg):
        if index not in (None, 1):
            return ERROR
        if not arg:
            return self._power_answer(self._on)
        action = STATE_WORDS.get(arg.lower(), int(arg) if arg.isdigit() else None)
        if action not in (0, 1, 2):
            return ERROR
        target = (not self._on) if action == 2 else bool(action)
        if self._fault == "wrong_state":
            self._spend_fault()
            return self._power_answer(not target)
        if target:
            self._power_on_commands += 1
        else:
            self._power_off_commands += 1
        self._switch(target, "command")
        return self._power_answer(self._on)

    def _cmd_status(self, index, arg):
        if index == 0:
            number = 0
        elif not arg:
            return {"Status": self._status_block()}
        elif re.fullmatch(r"-?\d+", arg):
            number = int(arg)
        else:
            return ERROR
        if number < 0:
            return {}
        blocks = self._status_blocks()
        if number == 0:
            return {key: blocks[key] for key in STATUS_ALL}
        if number not in STATUS_KEYS:
            return ERROR
        key = STATUS_KEYS[number]
        return {key: blocks[key]}

    def _cmd_state(self, index, arg):
        return self._status_sts()

    def _cmd_pulsetime(self, index, arg):
        if index is not None and not 1 <= index <= PULSE_TIMERS:
            return ERROR
        if index is None and not arg:
            sets = [self._pulse_set] + [0] * (PULSE_TIMERS - 1)
            remaining = [self._pulse_remaining()] + [0] * (PULSE_TIMERS - 1)
            return {"PulseTime": {"Set": sets, "Remaining": remaining}}
        if index not in (None, 1):  # timers 2..32 control nothing on a single-relay plug
            return {f"PulseTime{index}": {"Set": 0, "Remaining": 0}}
        value = 0 if STATE_WORDS.get(arg.lower()) == 0 else int(arg) if arg.isdigit() else None
        if value is not None and value < 65536:  # anything else just shows the setting
            self._pulse_set = value
            self._pulse_deadline = time.monotonic() + decode_pulse(value) if value else None
        return {"PulseTime1": {"Set": self._pulse_set, "Remaining": self._pulse_remaining()}}

    def _cmd_poweronstate(self, index, arg):
        if arg:
            if not arg.isdigit() or int(arg) > 5:
                return ERROR
            self.power_on_state = int(arg)
        return {"PowerOnState": self.power_on_state}

    def _cmd_devicename(self, index, arg):
        if arg:
            self.device_name = arg
        return {"DeviceName": self.device_name}

    # -- internals (call with the lock held) ---------------------------------------------------

    def _advance(self) -> None:
        """Bring energy and the PulseTime countdown up to now, expiring the pulse at its deadline."""
        now = time.monotonic()
        deadline = self._pulse_deadline
        if deadline is not None and deadline <= now:
            self._accumulate(deadline)
            self._pulse_deadline = None
            if self._on:
                self._on = False
                self._transitions.append((self._wall(deadline), False, "pulsetime"))
        self._accumulate(now)

    def _accumulate(self, until: float) -> None:
        day = date.fromtimestamp(self._wall(until))
        if day != self._day:
            self._yesterday_kwh = self._today_kwh if (day - self._day).days == 1 else 0.0
            self._today_kwh = 0.0
            self._day = day
        if self._on:
            kwh = self._load_w * (until - self._last) / 3_600_000
            self._today_kwh += kwh
            self._total_kwh += kwh
        self._last = until

    def _switch(self, on: bool, source: str) -> None:
        """Apply a switching action: cancel the pulse timer, switch, restart the timer if now on."""
        self._pulse_deadline = None
        if on != self._on:
            self._on = on
            self._transitions.append((time.time(), on, source))
        if on and self._pulse_set:
            self._pulse_deadline = time.monotonic() + decode_pulse(self._pulse_set)

    def _pulse_remaining(self) -> int:
        if self._pulse_deadline is None:
            return 0
        return encode_pulse(self._pulse_deadline - time.monotonic())

    @staticmethod
    def _wall(monotonic: float) -> float:
        return time.time() - (time.monotonic() - monotonic)

    @staticmethod
    def _power_answer(on: bool) -> dict:
        return {"POWER": "ON" if on else "OFF"}

    def _uptime(self) -> tuple[str, int]:
        seconds = int(time.monotonic() - self._started)
        days, rest = divmod(seconds, 86400)
        return f"{days}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}", seconds

    def _status_block(self) -> dict:
        return {
            "Module": 0, "DeviceName": self.device_name, "FriendlyName": [self.device_name], "Topic": TOPIC,
            "ButtonTopic": "0", "Power": "1" if self._on else "0", "PowerLock": "0", "PowerOnState": self.power_on_state,
            "LedState": 1, "LedMask": "FFFF", "SaveData": 1, "SaveState": 1, "SwitchTopic": "0",
            "SwitchMode": [0] * 8, "ButtonRetain": 0, "SwitchRetain": 0, "SensorRetain": 0, "PowerRetain": 0,
            "InfoRetain": 0, "StateRetain": 0, "StatusRetain": 0,
        }

    def _status_sns(self) -> dict:
        active = self._on and self._load_w > 0
        factor = self.power_factor if active else 0.0
        power = self._load_w if active else 0.0
        apparent = power / factor if active else 0.0
        return {
            "Time": local_time(),
            "ENERGY": {
                "TotalStartTime": TOTAL_START_TIME,
                "Total": Fixed(self._total_kwh, 3),
                "Yesterday": Fixed(self._yesterday_kwh, 3),
                "Today": Fixed(self._today_kwh, 3),
                "Power": round(power),
                "ApparentPower": round(apparent),
                "ReactivePower": round(math.sqrt(max(apparent**2 - power**2, 0.0))),
                "Factor": Fixed(factor, 2),
                "Voltage": round(self.voltage),
                "Current": Fixed(apparent / self.voltage if active else 0.0, 3),
            },
        }

    def _status_sts(self) -> dict:
        uptime, uptime_sec = self._uptime()
        return {
            "Time": local_time(), "Uptime": uptime, "UptimeSec": uptime_sec, "Heap": 25, "SleepMode": "Dynamic",
            "Sleep": 50, "LoadAvg": 19, "MqttCount": 0, "POWER": "ON" if self._on else "OFF",
            "Wifi": {"AP": 1, "SSId": "lab", "BSSId": "30:B5:C2:00:00:01", "Channel": 6, "Mode": "11n",
                     "RSSI": 78, "Signal": -61, "LinkCount": 1, "Downtime": "0T00:00:04"},
            "Hostname": HOSTNAME, "IPAddress": IP_ADDRESS,
        }

    def _status_blocks(self) -> dict:
        uptime, _ = self._uptime()
        now = time.time()
        return {
            "Status": self._status_block(),
            "StatusPRM": {"Baudrate": 115200, "SerialConfig": "8N1", "GroupTopic": "tasmotas",
                          "OtaUrl": "http://ota.tasmota.com/tasmota/release/tasmota.bin.gz",
                          "RestartReason": "Software/System restart", "Uptime": uptime,
                          "StartupUTC": datetime.fromtimestamp(self._wall(self._started), timezone.utc)
                          .strftime("%Y-%m-%dT%H:%M:%S"),
                          "Sleep": 50, "CfgHolder": 4617, "BootCount": 12, "BCResetTime": TOTAL_START_TIME,
                          "SaveCount": 40},
            "StatusFWR": {"Version": FIRMWARE, "BuildDateTime": "2024-12-12T10:00:00", "Boot": 31,
                          "Core": "2_7_8", "SDK": "2.2.2-dev(38a443e)", "CpuFrequency": 80,
                          "Hardware": "ESP8266EX", "CR": "372/699"},
            "StatusLOG": {"SerialLog": 2, "WebLog": 2, "MqttLog": 0, "SysLog": 0, "LogHost": "", "LogPort": 514,
                          "SSId": ["lab", ""], "TelePeriod": 300, "Resolution": "558180C0",
                          "SetOption": ["00008009", "2805C80001000600003C5A0A192800000000", "00000080",
                                        "00006000", "00004000", "00000000"]},
            "StatusMEM": {"ProgramSize": 629, "Free": 372, "Heap": 25, "ProgramFlashSize": 1024, "FlashSize": 1024,
                          "FlashChipId": "144051", "FlashFrequency": 40, "FlashMode": "DOUT",
                          "Features": ["0809", "8FDAC787", "04368001", "000000CF", "010013C0", "C000F989",
                                       "00004004", "00001000", "54000020", "00000080", "00000000"],
                          "Drivers": "1,2,3,4,5,6,7,8,9,10,12,16,18,19,20,21,22,24,26,27,29,30,35,37,45,62",
                          "Sensors": "1,2,3,4,5,6"},
            "StatusNET": {"Hostname": HOSTNAME, "IPAddress": IP_ADDRESS, "Gateway": "127.0.0.1",
                          "Subnetmask": "255.0.0.0", "DNSServer1": "127.0.0.1", "DNSServer2": "0.0.0.0",
                          "Mac": MAC, "Webserver": 2, "HTTP_API": 0 if self.require_referer else 1,
                          "WifiConfig": 4, "WifiPower": 17.0},
            "StatusMQT": {"MqttHost": "", "MqttPort": 1883, "MqttClientMask": "DVES_%06X",
                          "MqttClient": "DVES_5C1A7E", "MqttUser": "DVES_USER", "MqttCount": 0,
                          "MAX_PACKET_SIZE": 1200, "KEEPALIVE": 30, "SOCKET_TIMEOUT": 4},
            "StatusTIM": {"UTC": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "Local": local_time(now), "StartDST": "2025-03-30T02:00:00",
                          "EndDST": "2025-10-26T03:00:00", "Timezone": "+01:00",
                          "Sunrise": "08:07", "Sunset": "16:25"},
            "StatusPTH": {"PowerDelta": [0, 0, 0], "PowerLow": 0, "PowerHigh": 0, "VoltageLow": 0,
                          "VoltageHigh": 0, "CurrentLow": 0, "CurrentHigh": 0},
            "StatusSNS": self._status_sns(),
            "StatusSTS": self._status_sts(),
        }


class _HTTPServer(ThreadingHTTPServer):
    """One listening socket; `simulator` points back to the owning SimulatorServer."""

    daemon_threads = True
    allow_reuse_address = True
    # A fleet shares this one listening socket: socketserver's backlog of 5 would drop connections (and the
    # client would retry only after a second), which no real plug with a socket of its own does.
    request_queue_size = 1024

    def __init__(self, address, simulator):
        self.simulator = simulator
        super().__init__(address, _Handler)

    def server_bind(self):
        """Bind without HTTPServer's reverse DNS lookup of the host."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    """Routes /cm (Tasmota) and /sim/* (simulator control) requests — of the server's plug, or under
    /plug/<name>/ of one of its fleet (`SimulatorServer(plugs=...)`)."""

    protocol_version = "HTTP/1.1"  # Tasmota answers chunked with `Connection: close`

    def do_GET(self):
        """Handle GET."""
        self._dispatch()

    def do_POST(self):
        """Handle POST."""
        self._dispatch()

    def log_message(self, format, *args):
        """Log only when the server is verbose."""
        if self.server.simulator.verbose:
            super().log_message(format, *args)

    def _dispatch(self):
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # unread bytes would turn our close into a reset
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        path, self.plug = url.path, self.server.simulator.plug
        if path.startswith("/plug/"):  # one of the fleet: the prefix is part of the socket's address
            name, _, rest = path[len("/plug/"):].partition("/")
            self.plug, path = self.server.simulator.plugs.get(name), f"/{rest}"
        routes = {
            ("GET", "/cm"): self._cm, ("POST", "/cm"): self._cm,
            ("GET", "/sim/state"): self._sim_state, ("POST", "/sim/button"): self._sim_button,
            ("POST", "/sim/fault"): self._sim_fault, ("POST", "/sim/load"): self._sim_load,
            ("POST", "/sim/reset"): self._sim_reset, ("POST", "/sim/mains"): self._sim_mains,
        }
        route = routes.get((self.command, path))
        if route is None or self.plug is None:
            body = f"File Not Found\n\nURI: {url.path}\nMethod: {self.command}\nArguments: {len(query)}\n"
            self._send(404, body, "text/plain")
            return
        route(query)

    def _cm(self, query):
        simulator, plug = self.server.simulator, self.plug
        if plug.latency and simulator.stopping.wait(plug.latency):
            return
        if not plug.allows_referer(self.headers.get("Referer")):
            return  # SetOption128 0: close without a response
        if not plug.authenticates(query, self.headers.get("Authorization")):
            self._send(401, to_json({"WARNING": "Need user=<username>&password=<password>"}))
            return
        cmnd = query.get("cmnd", "").strip()
        fault = plug.receive(cmnd)
        if fault == "timeout":
            simulator.stopping.wait(HANG_SECONDS)
        elif fault == "http500":
            self._send(500, "Internal Server Error (simulated fault)", "text/plain")
        elif fault == "garbage":
            self._send(200, '{"POWER":')
        elif not cmnd or len(cmnd) >= 1200:
            self._send(200, to_json({"WARNING": "Enter command cmnd="}))
        else:
            self._send(200, to_json(plug.execute(cmnd)))

    def _sim_state(self, query):
        self._send(200, json.dumps(self.plug.snapshot()))

    def _sim_button(self, query):
        plug = self.plug
        plug.press_button()
        self._sim_state(query)

    def _sim_fault(self, query):
        kind = query.get("kind") or None
        if kind == "refuse":
            self._send(400, json.dumps({"error": "refuse cannot be cleared over HTTP; set it in-process"}))
            return
        try:
            count = int(query["count"]) if query.get("count") else None
            self.plug.set_fault(kind, count)
        except ValueError as exc:
            self._send(400, json.dumps({"error": str(exc)}))
            return
        self._sim_state(query)

    def _sim_load(self, query):
        try:
            self.plug.load_w = float(query["watts"])
        except (KeyError, ValueError):
            self._send(400, json.dumps({"error": "watts=<number> required"}))
            return
        self._sim_state(query)

    def _sim_mains(self, query):
        self.plug.mains_cycle()
        self._sim_state(query)

    def _sim_reset(self, query):
        self.plug.reset()
        self._sim_state(query)

    def _send(self, status, body, content_type="application/json"):
        """Answer like Tasmota: chunked body, no-cache, `Connection: close`."""
        data = body.encode()
        self.send_response_only(status)
        self.send_header("Server", "Tasmota/14.4.1 (simulator)")
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data) if data else b"0\r\n\r\n")
        self.log_request(status)


class SimulatorServer:
    """Serves a PlugSimulator over HTTP on a background thread; usable as a context manager.

    `plugs` (name → PlugSimulator): a fleet served by the same port, each under /plug/<name>/ (its
    socket's address is `http://host:port/plug/<name>`) — many plugs from one process, for benchmarks.
    """

    def __init__(self, plug=None, host="127.0.0.1", port=0, verbose=False, plugs=None):
        self.plug = plug or PlugSimulator()
        self.plugs = dict(plugs or {})
        self.host = host
        self.port = port
        self.verbose = verbose
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None
        self._started = False

    @property
    def url(self) -> str:
        """Base URL of the simulated plug."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SimulatorServer":
        """Bind (fixing the port if it was 0) and serve in a daemon thread."""
        with self._lock:
            if self._started:
                raise RuntimeError("SimulatorServer can only be started once")
            self._started = True
            self._listen()
        self.plug.add_fault_listener(self._on_fault)
        self._on_fault(self.plug.fault)
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and wake requests hanging in a "timeout" fault; idempotent."""
        with self._lock:
            if self.stopping.is_set():
                return
            self.stopping.set()
            self._close()
        if self._started:
            self.plug.remove_fault_listener(self._on_fault)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def _on_fault(self, kind):
        """Close the listening socket for "refuse" and re-bind the same port once it is gone."""
        with self._lock:
            if self.stopping.is_set():
                return
            if kind == "refuse":
                self._close()
            elif self._httpd is None:
                self._listen()

    def _listen(self):
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"plug-simulator-{self.port}", daemon=True)
        self._thread.start()

    def _close(self):
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = self._thread = None


class StripSimulator(PlugSimulator):
    """A Tasmota power strip: `relays` relays with their own PulseTime each, one meter for the whole strip
    (docs/device-protocols.md §6.1). Relay 1 is this object; `relay(n)` is relay n. Answers name the relay:
    `{"POWER2": "ON"}`, `{"PulseTime2": {...}}`, StatusSTS `POWER1` … `POWERn`; a relay it does not have is an error."""

    def __init__(self, *, relays: int = 4, **kwargs):
        super().__init__(**kwargs)
        self._others = [PlugSimulator(load_w=kwargs.get("load_w", 60.0)) for _ in range(relays - 1)]

    def relay(self, n: int) -> PlugSimulator:
        return self if n == 1 else self._others[n - 2]

    @property
    def relays(self) -> int:
        return 1 + len(self._others)

    def execute(self, cmnd: str) -> dict:
        word, _, arg = cmnd.strip().partition(" ")
        match = re.fullmatch(r"([A-Za-z_]+)(\d*)", word)
        name, index = (match.group(1).lower(), int(match.group(2)) if match.group(2) else 1) if match else ("", 1)
        if name in ("power", "pulsetime"):
            if not 1 <= index <= self.relays:
                return ERROR
            relay = self.relay(index)
            answer = PlugSimulator.execute(relay, f"{match.group(1)} {arg}".strip()) if relay is self else relay.execute(f"{match.group(1)} {arg}".strip())
            if name == "power":
                return {f"POWER{index}": value for value in answer.values()}
            return {f"PulseTime{index}": value for value in answer.values()}
        answer = super().execute(cmnd)
        for block in (answer, answer.get("StatusSTS"), answer.get("StatusSNS")):
            if isinstance(block, dict):
                self._whole_strip(block)
        return answer

    def _whole_strip(self, block: dict) -> None:
        """The strip's view in a status block: every relay's state, one meter over all of them."""
        if "POWER" in block:
            del block["POWER"]
            block.update({f"POWER{n}": "ON" if self.relay(n).is_on else "OFF" for n in range(1, self.relays + 1)})
        energy = block.get("ENERGY")
        if isinstance(energy, dict):
            for other in self._others:
                theirs = other.execute("Status 10")["StatusSNS"]["ENERGY"]
                for key in ("Power", "ApparentPower", "ReactivePower", "Current", "Today", "Total"):
                    mine, other_value = (value.value if isinstance(value, Fixed) else float(value) for value in (energy[key], theirs[key]))
                    decimals = energy[key].decimals if isinstance(energy[key], Fixed) else 3
                    energy[key] = Fixed(mine + other_value, decimals) if key in ("Today", "Total", "Current") else round(mine + other_value)
