"""32 clients against 4 gunicorn workers on PostgreSQL: every plug is ON whenever someone holds it, once per period,
and the ledger the concurrent writers sealed is one unbroken chain."""
import random
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from audit.ledger import ledger_head, ledger_verify
from audit.models import Event, EventKind
from instances.models import Instance
from sockets.models import PowerPeriod
from sockets.services import socket_update
from sockets.shelly_simulator import ShellyServer, ShellySimulator
from sockets.simulator import PlugSimulator, on_throughout
from sockets.simulator_mqtt import MqttPlug

THREADS = 32
ROUNDS = 4
pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@dataclass
class Record:
    """What the clients saw, per socket: held intervals and the answers' power flags."""

    held: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    power_ons: dict[str, int] = field(default_factory=dict)
    power_offs: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, flags: dict[str, int], name: str, answer: dict, key: str) -> None:
        with self.lock:
            flags[name] = flags.get(name, 0) + bool(answer.get(key))


def hammer(base: str, names: list[str]) -> Record:
    """THREADS clients, released together, each doing ROUNDS of start → hold → stop or delete (+ repeat stop)."""
    record = Record()
    barrier = threading.Barrier(THREADS)

    def call(session: requests.Session, method: str, url: str, **kwargs) -> requests.Response | None:
        response = session.request(method, url, timeout=60, allow_redirects=False, **kwargs)
        if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith("application/json"):
            with record.lock:
                record.failures.append(f"{method} {url} → {response.status_code} {response.text[:200]}")
            return None
        return response

    def client(seed: int) -> None:
        rng, session = random.Random(seed), requests.Session()
        barrier.wait(timeout=60)
        for _ in range(ROUNDS):
            name = rng.choice(names)
            started = call(session, "POST", f"{base}/instance", data={"socket": name, "emergencyStopTimeout": "600000"})
            answered_at = time.time()
            if started is None:
                continue
            record.count(record.power_ons, name, started.json(), "triggeredPowerOn")
            instance_id = started.json()["instance"]["id"]
            time.sleep(rng.uniform(0, 0.03))
            stop_requested_at = time.time()
            if rng.random() < 0.5:
                stopped = call(session, "PUT", f"{base}/instance/:instanceId", data={"instanceId": instance_id})
            else:
                stopped = call(session, "DELETE", f"{base}/instance/{instance_id}")
            if stopped is None:
                continue
            record.count(record.power_offs, name, stopped.json(), "triggeredPowerOff")
            with record.lock:
                record.held.setdefault(name, []).append((answered_at, stop_requested_at))
            if rng.random() < 0.25 and stopped.request.method == "PUT":  # CPEE may stop twice: a no-op
                again = call(session, "PUT", f"{base}/instance/{instance_id}")
                if again is not None and again.json()["triggeredPowerOff"] is not False:
                    with record.lock:
                        record.failures.append(f"repeat stop of {instance_id} powered off again")

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 180
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0))
    assert not any(thread.is_alive() for thread in threads), "clients still running after 180 s"
    return record


def assert_plug_history(name: str, plug, record: Record) -> None:
    """The plug's own record agrees with the clients' and the database's, for one socket."""
    held = record.held.get(name, [])
    assert all(plug.was_on_throughout(t0, t1) for t0, t1 in held), f"{name} was OFF while held"
    assert not plug.is_on, f"{name} left ON"
    periods = list(PowerPeriod.objects.filter(socket__name=name).order_by("power_on_at", "pk"))
    assert all(p.power_off_at is not None for p in periods), f"{name} has an open period"
    assert all(a.power_off_at <= b.power_on_at for a, b in zip(periods, periods[1:])), f"{name}: periods overlap"
    ons = [t for t in plug.transitions if t[1]]
    assert record.power_ons.get(name, 0) == record.power_offs.get(name, 0) == len(periods) == len(ons)
    assert plug.power_on_commands == plug.power_off_commands == len(periods)


def assert_one_unbroken_chain() -> None:
    """Every start, ending and switch of the run is an event, chained 1 … N without a fork or a gap."""
    head = ledger_head()
    seqs = list(Event.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, head.seq + 1)), "one chain: no seq twice, none missing"
    verification = ledger_verify()
    assert verification.valid and verification.events == head.seq, verification.reason
    assert Event.objects.filter(kind=EventKind.INSTANCE_START).count() == THREADS * ROUNDS
    ended = Event.objects.filter(kind__in=[EventKind.INSTANCE_STOP, EventKind.INSTANCE_DELETE]).count()
    assert ended == THREADS * ROUNDS
    assert Event.objects.filter(kind=EventKind.POWER_ON).count() == Event.objects.filter(kind=EventKind.POWER_OFF).count() == PowerPeriod.objects.count()


@pytest.mark.timeout(240)
def test_32_clients_on_one_socket(postgres, web, device):
    """DESIGN §3.2 on every driver: ON whenever someone holds it, switched once per period, one chain."""
    record = hammer(web, ["default"])

    assert record.failures == []
    assert sum(len(v) for v in record.held.values()) == THREADS * ROUNDS
    assert_plug_history("default", device, record)
    assert not Instance.objects.filter(stopped_at=None).exists()
    assert len(record.held["default"]) > PowerPeriod.objects.count()  # holders really overlapped
    assert_one_unbroken_chain()


@pytest.mark.timeout(240)
def test_32_clients_on_three_sockets(postgres, web, plugs):
    record = hammer(web, list(plugs))

    assert record.failures == []
    assert sum(len(v) for v in record.held.values()) == THREADS * ROUNDS
    for name, plug in plugs.items():
        assert record.held.get(name), f"no client used {name}"
        assert_plug_history(name, plug, record)
    assert not Instance.objects.filter(stopped_at=None).exists()
    assert_one_unbroken_chain()


class ShellyHistory:
    """A Shelly switch's own record, read the way assert_plug_history reads a PlugSimulator's. Arming the flip-back
    timer is a `Switch.Set on:true` to an ON switch, so switch commands are counted by the changes they made."""

    def __init__(self, device: ShellySimulator):
        self.device, self.switch = device, device.switches[0]

    @property
    def is_on(self) -> bool:
        return self.device.is_on(0)

    @property
    def transitions(self) -> list[tuple[float, bool, str]]:
        with self.device.lock:
            return list(self.switch.transitions)

    @property
    def power_on_commands(self) -> int:
        return sum(1 for _, on, _ in self.transitions if on)

    @property
    def power_off_commands(self) -> int:
        return sum(1 for _, on, _ in self.transitions if not on)

    def was_on_throughout(self, t0: float, t1: float) -> bool:
        return on_throughout(self.transitions, initial=False, t0=t0, t1=t1)


@pytest.fixture(params=["tasmota_http", "shelly_rpc", "tasmota_mqtt"])
def device(request, socket):
    """The default socket's device: the Tasmota over HTTP it has, a Shelly Gen2 over HTTP, or a Tasmota over MQTT
    (a real Mosquitto); its own record of the relay."""
    if request.param == "tasmota_http":
        yield request.getfixturevalue("plug")
    elif request.param == "shelly_rpc":
        with ShellyServer(ShellySimulator(switches=1)) as server:
            socket_update(socket_id=socket.pk, driver="shelly_rpc", address=server.url)
            yield ShellyHistory(server.device)
    else:
        broker = request.getfixturevalue("broker")
        with MqttPlug(plug=PlugSimulator(), port=broker.port, topic="lab_plug_1") as plug:
            socket_update(socket_id=socket.pk, driver="tasmota_mqtt", address=f"{broker.url}/lab_plug_1")
            yield plug.plug
