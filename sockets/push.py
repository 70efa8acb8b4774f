"""The MQTT side of the push listener: which topics to follow, one connection per broker, messages as events.

`MqttListener.sync()` reads the `tasmota_mqtt` sockets from the database and subscribes to each one's
`stat/<topic>/POWER<n>` (`POWER` too for channel 1), `tele/<topic>/SENSOR` and `tele/<topic>/LWT`,
dropping what no socket needs any more — so sockets added or edited in the admin are followed
without a restart. paho's network threads only queue what arrives (`Push`); the caller handles the
queue in its own thread (database work never runs on a network thread). After every (re)connect
each socket of that broker gets a `Push(kind="reconnect")`: what happened while the connection was
down is re-read, not lost. Nothing is kept but connections and subscriptions.
"""
import json
import logging
import os
import queue
import threading
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from .drivers import DeviceError
from .drivers.tasmota_http import parse_energy
from .drivers.tasmota_mqtt import MqttAddress, mqtt_client, parse_mqtt_address
from .models import Socket

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Push:
    socket_id: int
    kind: str  # "power", "sensor", "lwt", "reconnect"
    value: object  # power: bool; sensor: EnergyReading; lwt: bool (online); reconnect: None
    at: datetime


def _broker_key(address: MqttAddress) -> tuple:
    return address.host, address.port, address.username, address.password, address.tls, address.ca_file


class _BrokerConnection:
    def __init__(self, address: MqttAddress, events: "queue.Queue[Push]"):
        self.address, self.events = address, events
        self.routes: dict[str, list[tuple[int, str]]] = {}  # topic -> [(socket id, kind)]: a device's LWT and SENSOR serve each channel
        self.lock = threading.Lock()
        self.client = mqtt_client(address, client_id=f"smartsocket-listen-{os.getpid()}-{id(self):x}")
        self.client.reconnect_delay_set(min_delay=0.5, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *args: logger.warning("listen: lost %s; reconnecting", address.broker)
        self.client.connect_async(address.host, address.port, keepalive=30)
        self.client.loop_start()

    def follow(self, routes: dict[str, list[tuple[int, str]]]) -> None:
        with self.lock:
            added, dropped = set(routes) - set(self.routes), set(self.routes) - set(routes)
            self.routes = dict(routes)
        for topic in dropped:
            self.client.unsubscribe(topic)
        for topic in added:
            self.client.subscribe(topic, qos=1)
        for socket_id in {socket_id for topic in added for socket_id, _ in routes[topic]}:  # new or edited: read it once
            self.events.put(Push(socket_id=socket_id, kind="reconnect", value=None, at=timezone.now()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            logger.error("listen: %s refused the connection: %s", self.address.broker, reason_code)
            return
        with self.lock:
            routes = dict(self.routes)
        for topic in routes:
            client.subscribe(topic, qos=1)
        socket_ids = {socket_id for targets in routes.values() for socket_id, _ in targets}
        logger.info("listen: connected to %s, following %d sockets", self.address.broker, len(socket_ids))
        for socket_id in socket_ids:
            self.events.put(Push(socket_id=socket_id, kind="reconnect", value=None, at=timezone.now()))

    def _on_message(self, client, userdata, message):
        at = timezone.now()
        with self.lock:
            targets = list(self.routes.get(message.topic, ()))
        payload = message.payload.decode(errors="replace").strip()
        for socket_id, kind in targets:
            self._route(socket_id, kind, payload, at)

    def _route(self, socket_id: int, kind: str, payload: str, at: datetime) -> None:
        if kind == "power" and payload.upper() in ("ON", "OFF"):
            self.events.put(Push(socket_id=socket_id, kind="power", value=payload.upper() == "ON", at=at))
        elif kind == "lwt" and payload in ("Online", "Offline"):
            self.events.put(Push(socket_id=socket_id, kind="lwt", value=payload == "Online", at=at))
        elif kind.startswith("sensor:"):
            try:
                reading = parse_energy({"StatusSNS": json.loads(payload)}, channel=int(kind.split(":")[1]))
            except (ValueError, DeviceError):
                return  # telemetry without a meter reading
            self.events.put(Push(socket_id=socket_id, kind="sensor", value=reading, at=at))


class MqttListener:
    """Follows every `tasmota_mqtt` socket; `events` is the queue of what they push."""

    def __init__(self):
        self.events: queue.Queue[Push] = queue.Queue()
        self.connections: dict[tuple, _BrokerConnection] = {}

    def sync(self) -> int:
        """Subscribe to what the sockets in the database need now; the number of sockets followed."""
        wanted: dict[tuple, tuple[MqttAddress, dict[str, list[tuple[int, str]]]]] = {}
        for socket in Socket.objects.filter(driver="tasmota_mqtt").only("pk", "address", "channel", "username", "password"):
            try:
                address = parse_mqtt_address(socket.address, username=socket.username, password=socket.password)
            except DeviceError as exc:
                logger.warning("listen: socket %s not followed: %s", socket.pk, exc)
                continue
            routes = wanted.setdefault(_broker_key(address), (address, {}))[1]
            topic, n = address.topic, socket.channel
            routes.setdefault(f"stat/{topic}/POWER{n}", []).append((socket.pk, "power"))
            if n == 1:
                routes.setdefault(f"stat/{topic}/POWER", []).append((socket.pk, "power"))  # a one-relay device says POWER
            routes.setdefault(f"tele/{topic}/SENSOR", []).append((socket.pk, f"sensor:{n}"))
            routes.setdefault(f"tele/{topic}/LWT", []).append((socket.pk, "lwt"))
        for key in set(self.connections) - set(wanted):
            self.connections.pop(key).close()
        for key, (address, routes) in wanted.items():
            connection = self.connections.get(key)
            if connection is None:
                try:
                    connection = self.connections[key] = _BrokerConnection(address, self.events)
                except DeviceError as exc:  # e.g. an unreadable CA file: that broker's sockets stay polled, the rest are followed
                    logger.error("listen: %s not followed: %s", address.broker, exc)
                    continue
            connection.follow(routes)
        return len({socket_id for _, routes in wanted.values() for targets in routes.values() for socket_id, _ in targets})

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()
