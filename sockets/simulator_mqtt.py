"""The plug simulator as a Tasmota device on an MQTT broker (docs/device-protocols.md §2, §6.2).

Connects with its last will `tele/<topic>/LWT` = `Offline` (retained, QoS 1) and publishes `Online`
(retained); takes commands on `cmnd/<topic>/<Command>` (payload = the argument, empty = query) and
answers like the firmware: `stat/<topic>/RESULT` (`STATUS<n>` for `Status <n>`), plus the plain
`stat/<topic>/POWER` after every power command and every switch from elsewhere (the button, the
PulseTime countdown); `tele/<topic>/SENSOR` every TelePeriod. `vanish()` drops the connection
without a DISCONNECT, so the broker publishes the will. The relay logic is PlugSimulator's.

The plug's faults over MQTT: `timeout` (the command is taken, never answered; so is every command
while `silent`), `garbage` (the answer topic gets a payload that is not JSON), `http500` (MQTT has
no status code: the firmware's nearest, `{"Command":"Error"}`), `wrong_state` (as over HTTP). A
broker that is down is `refuse`.
"""
import json
import socket as pysocket
import threading
import time

import paho.mqtt.client as mqtt

from .simulator import PlugSimulator, to_json


class MqttPlug:
    def __init__(self, *, plug: PlugSimulator | None = None, host: str = "127.0.0.1", port: int = 1883, topic: str = "tasmota_5C1A7E",
                 teleperiod: float = 300.0):
        self.plug = plug or PlugSimulator()
        self.host, self.port, self.topic, self.teleperiod = host, port, topic, teleperiod
        self.silent = False  # takes commands but never answers (a device that hangs)
        self._published: dict[int, bool] = {}  # relay -> the state last published for it
        self.relays = getattr(self.plug, "relays", 1)  # a StripSimulator has several
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._online = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{topic}", clean_session=True)
        self.client.will_set(f"tele/{topic}/LWT", "Offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._watcher = threading.Thread(target=self._watch, daemon=True, name=f"mqtt-plug-{topic}")

    def start(self) -> "MqttPlug":
        """Connect, announce `Online` and the relay state, as the firmware does on (re)connect; returns once done."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._online.wait(5):
            raise TimeoutError(f"simulated plug {self.topic}: no connection to {self.host}:{self.port}")
        self._watcher.start()
        return self

    def stop(self) -> None:
        """A clean shutdown, as Tasmota's restart does: `Offline` published, then DISCONNECT (no will)."""
        self._stop.set()
        self.client.publish(f"tele/{self.topic}/LWT", "Offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def vanish(self) -> None:
        """The plug loses its mains: the TCP connection just drops, the broker publishes the last will."""
        self._stop.set()
        sock = self.client.socket()  # before loop_stop, which may let paho forget it
        self.client.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(pysocket.SHUT_RDWR)  # the broker sees the connection drop at once, with no DISCONNECT
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> "MqttPlug":
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self._stop.is_set():
            self.stop()

    def press_button(self, relay: int = 1) -> bool:
        """A hand on the plug (on relay n of a strip): toggled, and published like any switch."""
        on = self._relay(relay).press_button()
        self._publish_power_if_changed()
        return on

    def _relay(self, n: int):
        return self.plug.relay(n) if self.relays > 1 else self.plug

    def _key(self, n: int) -> str:
        """`POWER` on a one-relay device, `POWER<n>` on one with several (docs/device-protocols.md §6.1)."""
        return f"POWER{n}" if self.relays > 1 else "POWER"

    # -- the firmware's side --------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(f"cmnd/{self.topic}/#", qos=0)
        client.publish(f"tele/{self.topic}/LWT", "Online", qos=1, retain=True)
        self._published = {}  # the state again after every (re)connect
        threading.Thread(target=self._announce, daemon=True).start()

    def _announce(self) -> None:
        self._publish_power_if_changed()
        self._online.set()

    def _on_message(self, client, userdata, message):
        word = message.topic.rsplit("/", 1)[-1]
        argument = message.payload.decode(errors="replace").strip()
        cmnd = f"{word} {argument}".strip()
        fault = self.plug.receive(cmnd)
        name = word.rstrip("0123456789").lower()
        topic = f"stat/{self.topic}/STATUS{argument}" if name == "status" else f"stat/{self.topic}/RESULT"
        if fault == "timeout" or self.silent:
            return  # taken, never answered: the service's wait runs out
        if fault in ("garbage", "http500"):
            client.publish(topic, b"\x00\xff{POWER:" if fault == "garbage" else json.dumps({"Command": "Error"}))
            return
        answer = self.plug.execute(cmnd)
        with self._lock:
            client.publish(topic, to_json(answer))
            index = int(word[len(name):] or 1) if name == "power" else 0
            if 1 <= index <= self.relays:  # after every power command, as the firmware does
                on = self._relay(index).is_on
                client.publish(f"stat/{self.topic}/{self._key(index)}", "ON" if on else "OFF")
                self._published[index] = on

    def _publish_power_if_changed(self) -> None:
        with self._lock:
            for n in range(1, self.relays + 1):
                on = self._relay(n).is_on
                if on != self._published.get(n):
                    key = self._key(n)
                    self.client.publish(f"stat/{self.topic}/RESULT", json.dumps({key: "ON" if on else "OFF"}))
                    self.client.publish(f"stat/{self.topic}/{key}", "ON" if on else "OFF")
                    self._published[n] = on

    def _watch(self) -> None:
        """Switches from elsewhere (PulseTime running out) are published at once; SENSOR every TelePeriod."""
        next_tele = time.monotonic() + self.teleperiod
        while not self._stop.wait(0.02):
            self._publish_power_if_changed()
            if time.monotonic() >= next_tele:
                next_tele = time.monotonic() + self.teleperiod
                energy = self.plug.execute("Status 10").get("StatusSNS", {})
                self.client.publish(f"tele/{self.topic}/SENSOR", to_json(energy))
