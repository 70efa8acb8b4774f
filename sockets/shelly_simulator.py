"""A simulated Shelly Gen2+ device (a Plus Plug S with one switch, a Pro 4PM with four) over JSON-RPC on HTTP.

Speaks what docs/device-protocols.md §3.1 describes: `POST /rpc` frames and `GET /rpc/<Method>?…`,
`GET /shelly` without auth, HTTP Digest auth with SHA-256 (user `admin`, realm = device id) once a
password is set, `Switch.Set` with a real `toggle_after` countdown, `Switch.GetStatus` with
`source`, `aenergy.total` in Wh and the timer fields, `Switch.GetConfig`/`SetConfig`
(`initial_state`), errors as `{"code", "message"}`. Each switch meters on its own. `/sim/*`
controls it (a press on the device's button, the load, a fault) for tests; loopback only.

Faults (`fault`, or `/sim/fault?kind=`): `timeout` (every RPC call hangs), `http500` (the call is
answered HTTP 500 with the firmware's `-114 unavailable` error), `garbage` (HTTP 200, a body that is
not JSON). A device that is down is a stopped server (nothing listens: a refused connection).
"""
import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


SHELLY_FAULTS = (None, "timeout", "http500", "garbage")
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a device knows no proxy


class ShellySwitch:
    """One relay output with its own meter and flip-back timer (call with the device's lock held)."""

    def __init__(self, load_w: float):
        self.output, self.source, self.load_w = False, "init", load_w
        self.total_wh, self._last = 0.0, time.monotonic()
        self.timer_started_at: float | None = None  # wall clock, as the device reports it
        self.timer_duration: float | None = None
        self._timer_deadline: float | None = None  # monotonic
        self.initial_state = "off"
        self.transitions: list[tuple[float, bool, str]] = []
        self.on_change = None  # called with the new output on every change, whatever its source (the device's webhooks)

    def advance(self) -> None:
        now = time.monotonic()
        if self._timer_deadline is not None and self._timer_deadline <= now:
            self._accumulate(self._timer_deadline)
            self._switch(not self.output, "timer", at=self._timer_deadline)
        self._accumulate(now)

    def _accumulate(self, until: float) -> None:
        if self.output:
            self.total_wh += self.load_w * (until - self._last) / 3600
        self._last = until

    def set(self, on: bool, source: str, toggle_after: float | None = None) -> bool:
        """Switch.Set: the output, and a flip-back timer for this call only (any earlier one is cancelled)."""
        was_on = self.output
        self._switch(on, source)
        if toggle_after:
            self.timer_started_at, self.timer_duration = time.time(), float(toggle_after)
            self._timer_deadline = time.monotonic() + float(toggle_after)
        return was_on

    def _switch(self, on: bool, source: str, at: float | None = None) -> None:
        self.timer_started_at = self.timer_duration = self._timer_deadline = None
        changed = on != self.output
        if changed:
            wall = time.time() - (time.monotonic() - at) if at is not None else time.time()
            self.transitions.append((wall, on, source))
        self.output, self.source = on, source
        if changed and self.on_change is not None:
            self.on_change(on)

    def status(self, sid: int) -> dict:
        power = self.load_w if self.output else 0.0
        status = {"id": sid, "source": self.source, "output": self.output, "apower": round(power, 1), "voltage": 230.1,
                  "current": round(power / 230.1, 3), "pf": 0.97 if power else 0.0, "freq": 50.0,
                  "aenergy": {"total": round(self.total_wh, 3), "by_minute": [0.0, 0.0, 0.0], "minute_ts": int(time.time()) // 60 * 60},
                  "temperature": {"tC": 38.2, "tF": 100.8}}
        if self.timer_started_at is not None:
            status["timer_started_at"], status["timer_duration"] = round(self.timer_started_at, 2), self.timer_duration
        return status


class ShellySimulator:
    """A Shelly Gen2+ device: `switches` outputs, optionally password-protected (digest auth)."""

    def __init__(self, *, switches: int = 1, password: str | None = None, load_w: float = 60.0, app: str = "PlusPlugS"):
        self.device_id = f"shelly{app.lower()}-{secrets.token_hex(6)}"
        self.app, self.password = app, password
        self.switches = [ShellySwitch(load_w) for _ in range(switches)]
        self.calls: list[str] = []  # "Method" per RPC call, in order
        self.fault: str | None = None  # one of SHELLY_FAULTS: what every RPC call suffers
        self.lock = threading.Lock()
        self._nonces: set[str] = set()
        self.challenges = 0  # 401 answers sent: a client that keeps its digest state is challenged once
        self.hooks: list[dict] = []  # Webhook.Create'd: {id, cid, enable, event, name, urls}
        self.hook_calls: list[tuple[str, int]] = []  # (url, HTTP status or 0) of every webhook request made
        self.hooks_in_flight = 0  # webhook requests made and not answered yet
        for sid, switch in enumerate(self.switches):
            switch.on_change = lambda on, sid=sid: self._fire(sid, "switch.on" if on else "switch.off")

    # -- RPC --------------------------------------------------------------------------------------

    def rpc(self, method: str, params: dict) -> dict:
        """The result of one call, or {"error": {"code", "message"}}."""
        handler = {"Shelly.GetDeviceInfo": self._device_info, "Switch.GetStatus": self._get_status, "Switch.Set": self._set,
                   "Switch.Toggle": self._toggle, "Switch.GetConfig": self._get_config, "Switch.SetConfig": self._set_config,
                   "Webhook.List": self._hook_list, "Webhook.Create": self._hook_create, "Webhook.Update": self._hook_update,
                   "Webhook.Delete": self._hook_delete}.get(method)
        if handler is None:
            return {"error": {"code": 404, "message": f"No handler for {method}"}}
        with self.lock:
            self.calls.append(method)
            for switch in self.switches:
                switch.advance()
            return handler(params)

    def _switch_of(self, params: dict) -> tuple[int, ShellySwitch] | dict:
        sid = params.get("id")
        if sid is None:
            return {"error": {"code": -103, "message": "Missing required argument 'id'!"}}
        try:
            sid = int(sid)
            return sid, self.switches[sid]
        except (TypeError, ValueError, IndexError):
            return {"error": {"code": -105, "message": f"Argument 'id', value {sid} not found!"}}

    def _device_info(self, params):
        return {"result": {"name": None, "id": self.device_id, "mac": self.device_id.rsplit("-", 1)[1].upper(), "model": "SNSN-0013A",
                           "gen": 2, "fw_id": "20241011-114455/1.4.4-g6d2a586", "ver": "1.4.4", "app": self.app,
                           "auth_en": self.password is not None, "auth_domain": self.device_id if self.password else None}}

    def _get_status(self, params):
        found = self._switch_of(params)
        return found if isinstance(found, dict) else {"result": found[1].status(found[0])}

    def _set(self, params):
        found = self._switch_of(params)
        if isinstance(found, dict):
            return found
        on = params.get("on")
        if isinstance(on, str):
            on = {"true": True, "false": False}.get(on)
        if not isinstance(on, bool):
            return {"error": {"code": -103, "message": "Missing required argument 'on'!"}}
        toggle_after = params.get("toggle_after")
        try:
            toggle_after = float(toggle_after) if toggle_after is not None else None
        except (TypeError, ValueError):
            return {"error": {"code": -103, "message": "Invalid argument 'toggle_after'!"}}
        return {"result": {"was_on": found[1].set(on, "HTTP_in", toggle_after)}}

    def _toggle(self, params):
        found = self._switch_of(params)
        return found if isinstance(found, dict) else {"result": {"was_on": found[1].set(not found[1].output, "HTTP_in")}}

    def _get_config(self, params):
        found = self._switch_of(params)
        if isinstance(found, dict):
            return found
        return {"result": {"id": found[0], "name": None, "in_mode": "detached", "initial_state": found[1].initial_state,
                           "auto_on": False, "auto_on_delay": 60.0, "auto_off": False, "auto_off_delay": 60.0, "power_limit": 2800}}

    def _set_config(self, params):
        found = self._switch_of(params)
        if isinstance(found, dict):
            return found
        state = (params.get("config") or {}).get("initial_state")
        if state is not None:
            if state not in ("off", "on", "restore_last", "match_input"):
                return {"error": {"code": -103, "message": "Invalid argument 'initial_state'!"}}
            found[1].initial_state = state
        return {"result": {"restart_required": False}}

    # -- webhooks (docs/device-protocols.md §6.4) ---------------------------------------------------

    def _hook_list(self, params):
        return {"result": {"hooks": [dict(hook) for hook in self.hooks], "rev": len(self.hooks)}}

    def _hook_create(self, params):
        if len(self.hooks) >= 20:
            return {"error": {"code": -108, "message": "Resource exhausted: no more than 20 hooks"}}
        if params.get("event") not in ("switch.on", "switch.off") or not isinstance(params.get("urls"), list):
            return {"error": {"code": -103, "message": "Invalid argument 'event' or 'urls'!"}}
        hook = {"id": max((h["id"] for h in self.hooks), default=0) + 1, "cid": int(params.get("cid", 0)), "enable": bool(params.get("enable", True)),
                "event": params["event"], "name": params.get("name"), "urls": list(params["urls"])}
        self.hooks.append(hook)
        return {"result": {"id": hook["id"], "rev": len(self.hooks)}}

    def _hook_update(self, params):
        hook = next((h for h in self.hooks if h["id"] == params.get("id")), None)
        if hook is None:
            return {"error": {"code": -105, "message": f"Argument 'id', value {params.get('id')} not found!"}}
        hook.update({key: params[key] for key in ("enable", "urls", "name") if key in params})
        return {"result": {"rev": len(self.hooks)}}

    def _hook_delete(self, params):
        self.hooks = [h for h in self.hooks if h["id"] != params.get("id")]
        return {"result": {"rev": len(self.hooks)}}

    def _fire(self, sid: int, event: str) -> None:
        """The device calls each enabled hook of `event` on switch `sid` (a GET, in the background, as the firmware does)."""
        for hook in self.hooks:
            if hook["enable"] and hook["event"] == event and hook["cid"] == sid:
                for url in hook["urls"]:
                    self.hooks_in_flight += 1  # under the device's lock, as every switch is
                    threading.Thread(target=self._call_hook, args=(url,), daemon=True).start()

    def _call_hook(self, url: str) -> None:
        try:
            with _direct.open(url, timeout=3) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0
        with self.lock:
            self.hook_calls.append((url, status))
            self.hooks_in_flight -= 1

    def hooks_quiet(self, timeout: float = 5.0) -> bool:
        """Stop calling webhooks and wait until those under way are answered (a test's end: nothing reaches it after)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            self.hooks = []
        while time.monotonic() < deadline:
            with self.lock:
                if not self.hooks_in_flight:
                    return True
            time.sleep(0.02)
        return False

    # -- the device itself, for tests -------------------------------------------------------------

    def press_button(self, sid: int = 0) -> bool:
        """A hand on the device: toggles the output (source `button`, as a local input reports)."""
        with self.lock:
            switch = self.switches[sid]
            switch.advance()
            switch.set(not switch.output, "button")
            return switch.output

    def is_on(self, sid: int = 0) -> bool:
        with self.lock:
            self.switches[sid].advance()
            return self.switches[sid].output

    def timer_remaining(self, sid: int = 0) -> float:
        with self.lock:
            switch = self.switches[sid]
            switch.advance()
            return max(switch.timer_started_at + switch.timer_duration - time.time(), 0.0) if switch.timer_started_at else 0.0

    # -- digest auth (RFC 7616, SHA-256) ------------------------------------------------------------

    def challenge(self) -> str:
        nonce = secrets.token_hex(16)
        with self.lock:
            self._nonces.add(nonce)
            self.challenges += 1
        return f'Digest qop="auth", realm="{self.device_id}", nonce="{nonce}", algorithm=SHA-256'

    def authenticates(self, method: str, header: str | None) -> bool:
        if self.password is None:
            return True
        if not header or not header.startswith("Digest "):
            return False
        fields = {}
        for part in header[len("Digest "):].split(","):
            key, _, value = part.strip().partition("=")
            fields[key] = value.strip('"')
        with self.lock:
            known = fields.get("nonce") in self._nonces
        if not known or fields.get("username") != "admin" or fields.get("realm") != self.device_id:
            return False

        def sha(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        ha1, ha2 = sha(f"admin:{self.device_id}:{self.password}"), sha(f"{method}:{fields.get('uri', '')}")
        expected = sha(f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:{fields.get('qop', '')}:{ha2}")
        return secrets.compare_digest(expected, fields.get("response", ""))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self):
        if self.server.stopping.is_set():  # the device is gone: a kept-alive connection is dropped, never answered
            self.close_connection = True
            return
        device: ShellySimulator = self.server.device
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith("/sim/"):
            self._sim(device, url.path, query)
            return
        if url.path == "/shelly":
            self._send(200, device.rpc("Shelly.GetDeviceInfo", {})["result"])
            return
        if url.path == "/rpc" and self.command == "POST":
            try:
                frame = json.loads(body or b"{}")
                method, params, call_id = frame["method"], frame.get("params") or {}, frame.get("id")
            except (ValueError, KeyError, TypeError):
                self._send(400, {"id": None, "error": {"code": -103, "message": "Bad frame"}})
                return
        elif url.path.startswith("/rpc/"):
            method, params, call_id = url.path[len("/rpc/"):], query, None
        else:
            self._send(404, {"code": 404, "message": "Not found"})
            return
        if method != "Shelly.GetDeviceInfo" and not device.authenticates(self.command, self.headers.get("Authorization")):
            self._send(401, {"id": call_id, "src": device.device_id, "error": {"code": 401, "message": "unauthenticated"}},
                       headers={"WWW-Authenticate": device.challenge()})
            return
        if device.fault == "timeout":  # accepts the connection, never answers
            self.server.stopping.wait(30)
            return
        if device.fault == "http500":
            self._send(500, {"id": call_id, "src": device.device_id, "error": {"code": -114, "message": "Unavailable"}})
            return
        if device.fault == "garbage":
            self._send(200, None, raw=b"\x00\xffswitch:0 output=tr")
            return
        answer = device.rpc(method, params)
        if url.path == "/rpc":
            self._send(200, {"id": call_id, "src": device.device_id, **answer})
        else:
            self._send(200 if "result" in answer else 400, answer.get("result", answer.get("error")))

    def _sim(self, device: ShellySimulator, path: str, query: dict) -> None:
        sid = int(query.get("id", 0))
        if path == "/sim/button":
            self._send(200, {"output": device.press_button(sid)})
        elif path == "/sim/load":
            with device.lock:
                device.switches[sid].advance()
                device.switches[sid].load_w = float(query["watts"])
            self._send(200, {"load_w": float(query["watts"])})
        elif path == "/sim/state":
            with device.lock:
                for switch in device.switches:
                    switch.advance()
                self._send(200, {"switches": [switch.status(n) for n, switch in enumerate(device.switches)], "calls": device.calls})
        elif path == "/sim/fault" and query.get("kind") in SHELLY_FAULTS:
            device.fault = query.get("kind") or None
            self._send(200, {"fault": device.fault})
        else:
            self._send(404, {"message": "unknown simulator control"})

    def _send(self, status: int, body, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class ShellyServer:
    """Serves a ShellySimulator on 127.0.0.1 (a free port unless given) in a thread; a context manager."""

    def __init__(self, device: ShellySimulator | None = None, port: int = 0):
        self.device = device or ShellySimulator()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.device = self.device
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._ticker = threading.Thread(target=self._tick, daemon=True)  # timers end on time (and fire their webhooks)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "ShellyServer":
        self._thread.start()
        self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._server.stopping.wait(0.05):
            with self.device.lock:
                for switch in self.device.switches:
                    switch.advance()

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ShellyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
