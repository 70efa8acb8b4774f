"""Tasmota over MQTT (`mqtt://[user:password@]host[:port]/<topic>`, `mqtts://` for TLS), as docs/device-protocols.md §2 describes.

The same console commands and answers as over HTTP (this driver is the HTTP one with another
transport): `Power2 On` is published on `cmnd/<topic>/Power2` with payload `On`; the answer is
the next `stat/<topic>/RESULT` (or `stat/<topic>/STATUS<n>` for `Status <n>`) whose JSON answers
*that* command — a key of its name (`POWER2`, `PulseTime2`, `PowerOnState`) or the device's
`{"Command": "Error"}` — never just the next message from anyone. One command per device at a
time in a process (a lock per topic); across processes the socket lock orders them.

One MQTT connection per broker and process, opened on first use (after a fork, a new one),
subscribed to `stat/<topic>/+` before a command is sent (so its answer cannot be missed), and
re-subscribed after paho's automatic reconnect (backoff 0.5 … 30 s).
"""
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings

from .base import DeviceAuthError, DeviceError, DeviceProtocolError, DeviceTimeout, DeviceUnreachable, DriverCapabilities
from .tasmota_http import TasmotaHttpDriver


@dataclass(frozen=True)
class MqttAddress:
    host: str
    port: int
    topic: str
    username: str
    password: str
    tls: bool
    ca_file: str = ""  # the CAs a TLS broker is verified against (empty: the system's)

    @property
    def broker(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_mqtt_address(address: str, *, username: str = "", password: str = "") -> MqttAddress:
    """`mqtt://[user:password@]host[:port]/<topic>`; credentials in the URL win over the socket's (the broker's)."""
    url = urlsplit(address)
    topic = url.path.strip("/")
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname or not topic or "/" in topic or any(c in topic for c in "+#"):
        raise DeviceError(f"{address!r}: not mqtt://[user:password@]host[:port]/<topic> (one topic level, no wildcards)")
    tls = url.scheme == "mqtts"
    return MqttAddress(host=url.hostname, port=url.port or (8883 if tls else 1883), topic=topic,
                       username=unquote(url.username) if url.username else username, password=unquote(url.password) if url.password else password, tls=tls,
                       ca_file=settings.SMARTSOCKET_MQTT_CA_FILE if tls else "")


def mqtt_client(address: MqttAddress, *, client_id: str) -> mqtt.Client:
    """A paho client for `address`'s broker: its credentials, and TLS verifying the broker's certificate and name."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if address.username:
        client.username_pw_set(address.username, address.password or None)
    if address.tls:
        try:
            client.tls_set(ca_certs=address.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ValueError) as exc:  # a missing or unreadable SMARTSOCKET_MQTT_CA_FILE: a device fault like any other
            raise DeviceUnreachable(f"{address.broker}: TLS not set up with CA file {address.ca_file!r}: {exc}") from exc
    return client


@dataclass
class _Waiter:
    topic: str
    word: str  # the command's name, lower case, without its index ("power", "pulsetime", "status")
    keys: frozenset = frozenset()  # the answer keys (lower case) that answer this command: "power2", "pulsetime2", "poweronstate"
    expected: dict | None = None  # a switching command: the answer that confirms it ({"POWER2": "ON"})
    event: threading.Event = field(default_factory=threading.Event)
    answer: dict | None = None
    other: dict | None = None  # a state answer that does not confirm the switch (the device's own announcement, or a refusal)
    other_event: threading.Event = field(default_factory=threading.Event)

    def offer(self, topic: str, answer: dict) -> bool:
        if topic != self.topic:
            return False
        if self.word != "status" and not any(key.lower() in self.keys or key == "Command" for key in answer):
            return False
        if self.expected is not None and "Command" not in answer and not any(answer.get(key) == value for key, value in self.expected.items()):
            self.other = answer  # e.g. the state a reconnecting device announces: keep waiting a little for ours
            self.other_event.set()
            return False
        self.answer = answer
        self.event.set()
        return True

    def wait(self, timeout: float) -> dict | None:
        """The answer; a non-confirming one only if no confirming one follows within a short grace."""
        deadline = time.monotonic() + timeout
        while not self.event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self.other_event.is_set():
                self.event.wait(min(remaining, OTHER_ANSWER_GRACE))
                break
            self.event.wait(min(remaining, 0.05))
        return self.answer or self.other


OTHER_ANSWER_GRACE = 0.3  # seconds to wait for the answer to a switch after a state answer that is not it


class _Broker:
    """One paho client per broker and process: connection, subscriptions, and the commands waiting for answers."""

    def __init__(self, address: MqttAddress, connect_timeout: float):
        self.address = address
        self.lock = threading.Lock()
        self.topics: dict[str, threading.Event] = {}  # topic -> set once the broker acknowledged the subscription
        self.device_locks: dict[str, threading.Lock] = {}
        self.waiters: list[_Waiter] = []
        self.subscribed = threading.Condition()
        self.pending_subscriptions: set[int] = set()
        self.connected = threading.Event()
        self.refused: str = ""
        self.client = mqtt_client(address, client_id=f"smartsocket-{os.getpid()}-{id(self):x}")
        self.client.connect_timeout = connect_timeout
        self.client.reconnect_delay_set(min_delay=0.5, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.started = False
        self.used_at = time.monotonic()

    def close(self) -> None:
        """Disconnect and stop the network thread (a client nobody uses any more)."""
        self.client.disconnect()
        self.client.loop_stop()

    def ensure_connected(self, timeout: float) -> None:
        with self.lock:
            if not self.started:
                try:
                    self.client.connect(self.address.host, self.address.port, keepalive=30)
                except (OSError, ValueError) as exc:
                    raise DeviceUnreachable(f"{self.address.broker}: broker not reachable: {exc}") from exc
                self.client.loop_start()
                self.started = True
        if not self.connected.wait(timeout):
            raise DeviceUnreachable(f"{self.address.broker}: broker not connected within {timeout:g} s{': ' + self.refused if self.refused else ''}")

    def subscribe(self, topic: str, timeout: float) -> None:
        """`stat/<topic>/+`, acknowledged by the broker before the first command is sent (a concurrent first
        command for the same device waits for that acknowledgement too)."""
        with self.lock:
            acked = self.topics.get(topic)
            first = acked is None
            if first:
                acked = self.topics[topic] = threading.Event()
                self.device_locks.setdefault(topic, threading.Lock())
        if not first:
            if not acked.wait(timeout):
                raise DeviceTimeout(f"{self.address.broker}: subscription not acknowledged within {timeout:g} s")
            return
        with self.subscribed:  # held while subscribing: the SUBACK cannot be handled before its mid is pending
            result, mid = self.client.subscribe(f"stat/{topic}/+", qos=0)
            ok = result == mqtt.MQTT_ERR_SUCCESS
            if ok:
                self.pending_subscriptions.add(mid)
                ok = self.subscribed.wait_for(lambda: mid not in self.pending_subscriptions, timeout)
        if not ok:
            with self.lock:
                self.topics.pop(topic, None)
            raise DeviceTimeout(f"{self.address.broker}: subscription to {topic} not acknowledged within {timeout:g} s")
        acked.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = str(reason_code)
            return
        self.refused = ""
        for topic in list(self.topics):  # a clean session after a reconnect: subscribe again
            client.subscribe(f"stat/{topic}/+", qos=0)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.subscribed:
            self.pending_subscriptions.discard(mid)
            self.subscribed.notify_all()

    def _on_message(self, client, userdata, message):
        try:
            answer = json.loads(message.payload)
        except ValueError:
            return  # stat/<topic>/POWER: plain ON/OFF, not an answer we wait for
        if not isinstance(answer, dict):
            return
        with self.lock:
            for waiter in list(self.waiters):
                if waiter.offer(message.topic, answer):
                    self.waiters.remove(waiter)
                    return


_brokers: dict[tuple, _Broker] = {}
_brokers_lock = threading.Lock()
# A broker client no command used for this long is closed: the credentials it was made with changed, or the
# sockets that used it were removed or moved to another broker. A later command makes a new one.
BROKER_IDLE_SECONDS = 600.0


def _broker_for(address: MqttAddress, connect_timeout: float) -> _Broker:
    key = (os.getpid(), address.host, address.port, address.username, address.password, address.tls, address.ca_file)
    now = time.monotonic()
    with _brokers_lock:
        broker = _brokers.get(key)
        if broker is None:
            broker = _brokers[key] = _Broker(address, connect_timeout)
        broker.used_at = now
        idle = [_brokers.pop(other) for other, each in list(_brokers.items()) if now - each.used_at > BROKER_IDLE_SECONDS]
    for each in idle:
        each.close()
    return broker


class TasmotaMqttDriver(TasmotaHttpDriver):
    """Drives one relay of a Tasmota device through an MQTT broker: the HTTP driver's commands, another transport."""

    # Push (the listener, `manage.py listen`) follows stat/<topic>/POWER<n>, tele/<topic>/SENSOR and LWT.
    capabilities = DriverCapabilities(failsafe_timer=True, push=True, per_channel_energy=False, device_info=True)

    def __init__(self, *, address: str, channel: int = 1, username: str = "", password: str = "", timeout: tuple[float, float] = (2.0, 3.0)):
        self.mqtt = parse_mqtt_address(address, username=username, password=password)
        self.address = f"{self.mqtt.broker}/{self.mqtt.topic}"
        self.channel = channel
        self.index = "" if channel == 1 else str(channel)
        self.timeout = timeout

    def _command(self, cmnd: str) -> dict:
        word, _, argument = cmnd.strip().partition(" ")
        name = word.rstrip("0123456789").lower()
        topic = self.mqtt.topic
        # `Status <n>` answers on stat/<topic>/STATUS<n> (`Status` alone on STATUS), everything else on RESULT.
        answer_topic = f"stat/{topic}/STATUS{argument.strip()}" if name == "status" else f"stat/{topic}/RESULT"
        broker = _broker_for(self.mqtt, self.timeout[0])
        broker.ensure_connected(self.timeout[0])
        broker.subscribe(topic, self.timeout[0])
        expected = None
        if name == "power" and argument.strip().upper() in ("ON", "OFF"):
            state = argument.strip().upper()
            expected = {f"POWER{self.channel}": state, **({"POWER": state} if self.channel == 1 else {})}
        if name in ("power", "pulsetime"):  # this channel's key; a one-relay device answers without the index
            keys = {f"{name}{self.channel}", *((name,) if self.channel == 1 else ())}
        else:
            keys = {name}
        waiter = _Waiter(topic=answer_topic, word=name, keys=frozenset(keys), expected=expected)
        with broker.device_locks[topic]:
            with broker.lock:
                broker.waiters.append(waiter)
            try:
                info = broker.client.publish(f"cmnd/{topic}/{word}", argument.strip(), qos=0)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise DeviceUnreachable(f"{self.address}: not published ({mqtt.error_string(info.rc)})")
                answer = waiter.wait(self.timeout[1])
                if answer is None:
                    raise DeviceTimeout(f"{self.address}: no answer to {word} within {self.timeout[1]:g} s (device offline?)")
            finally:
                with broker.lock:
                    if waiter in broker.waiters:
                        broker.waiters.remove(waiter)
        if "WARNING" in answer:
            raise DeviceAuthError(f"{self.address}: {answer['WARNING']}")
        if answer.get("Command") in ("Unknown", "Error"):
            raise DeviceProtocolError(f"{self.address}: command {cmnd!r} rejected")
        return answer
