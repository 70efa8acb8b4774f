"""The original's three process models, replayed as CPEE sends them (form bodies, the literal `:instanceId` path with
the id as an argument, CPEE headers), with the default socket configured from SMARTSOCKET_DEFAULT_SOCKET_* on each
driver: Tasmota over HTTP, Tasmota over MQTT, a Shelly Gen2, and relay 2 of a Tasmota strip."""
import time
from collections.abc import Callable

import pytest

from sockets.services import socket_ensure_default
from sockets.shelly_simulator import ShellyServer, ShellySimulator
from sockets.simulator import PlugSimulator, SimulatorServer, StripSimulator
from sockets.simulator_mqtt import MqttPlug

pytestmark = pytest.mark.django_db
CPEE = {"HTTP_CPEE_INSTANCE_URL": "https://cpee.example/flow/engine/42", "HTTP_CPEE_LABEL": "Mix sample", "HTTP_CPEE_ACTIVITY": "a3"}


@pytest.fixture(params=["tasmota_http", "tasmota_mqtt", "shelly_rpc", "tasmota_strip"])
def relay(request, settings) -> Callable[[], bool]:
    """The default socket on one driver, from the environment's settings; returns how to see its relay."""
    kind = request.param
    if kind == "tasmota_mqtt":
        broker = request.getfixturevalue("broker")
        device = MqttPlug(plug=PlugSimulator(), port=broker.port, topic="cpee_plug").start()
        request.addfinalizer(device.stop)
        driver, address, is_on = "tasmota_mqtt", f"{broker.url}/cpee_plug", lambda: device.plug.is_on
    elif kind == "shelly_rpc":
        server = ShellyServer(ShellySimulator(password="pw")).start()
        request.addfinalizer(server.stop)
        driver, address, is_on = "shelly_rpc", server.url, lambda: server.device.is_on(0)
        settings.SMARTSOCKET_DEFAULT_SOCKET_PASSWORD = "pw"
    else:
        server = SimulatorServer(plug=StripSimulator(relays=2) if kind == "tasmota_strip" else PlugSimulator()).start()
        request.addfinalizer(server.stop)
        driver, address = "tasmota_http", server.url
        is_on = (lambda: server.plug.relay(2).is_on) if kind == "tasmota_strip" else (lambda: server.plug.is_on)
        if kind == "tasmota_strip":
            settings.SMARTSOCKET_DEFAULT_SOCKET_CHANNEL = 2
    settings.SMARTSOCKET_DEFAULT_SOCKET_DRIVER, settings.SMARTSOCKET_DEFAULT_SOCKET_ADDRESS = driver, address
    socket_ensure_default()
    return is_on


def start(api, **extra) -> dict:
    answer = api.post("/api/instance", {"emergencyStopTimeout": "20000", **extra}, **CPEE)
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json", answer.content
    return answer.json()


def stop(api, instance_id: str) -> dict:
    answer = api.put("/api/instance/:instanceId", f"instanceId={instance_id}", content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_start_wait_stop(api, relay):
    started = start(api)
    assert started["triggeredPowerOn"] and relay() and started["instance"]["label"] == "Mix sample"
    waiting = api.get("/api/wait", {"duration": "1"}, HTTP_CPEE_CALLBACK="http://127.0.0.1:9/callbacks/" + "a" * 32 + "/")
    assert waiting.status_code == 200 and waiting["CPEE-CALLBACK"] == "true"
    for _ in range(2):  # the model polls the instance every second while it waits
        polled = api.get("/api/instance/:instanceId", {"instanceId": started["instance"]["id"]})
        assert polled.status_code == 200 and polled.json()["instance"]["isRunning"] and relay()
        time.sleep(0.2)
    stopped = stop(api, started["instance"]["id"])
    assert stopped["triggeredPowerOff"] and not relay()


def test_parallel_subprocesses(api, relay):
    ids = [start(api)["instance"]["id"] for _ in range(3)]
    assert relay()
    answers = [stop(api, instance_id) for instance_id in ids]
    assert [answer["triggeredPowerOff"] for answer in answers] == [False, False, True], "only the last stop powers OFF"
    assert not relay()


def test_emergency_stop_recover(api, relay):
    running = start(api)["instance"]["id"]
    assert api.post("/api/emergency-stop").status_code == 200 and not relay()
    refused = api.post("/api/instance", {"emergencyStopTimeout": "20000"}, **CPEE)
    assert refused.status_code == 409 and refused.json()["code"] == "socket_emergency_stopped" and not relay()
    assert stop(api, running)["triggeredPowerOff"] is False, "stopping what the emergency stop ended: a 2xx no-op"
    assert api.put("/api/recover").status_code == 200
    again = start(api)["instance"]["id"]
    assert relay()
    assert stop(api, again)["triggeredPowerOff"] and not relay()
