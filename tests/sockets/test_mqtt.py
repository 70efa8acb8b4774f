"""Tasmota over MQTT (`tasmota_mqtt`) through a real Mosquitto broker, against the simulator publishing like the firmware."""
import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from sockets.drivers import DeviceError, DeviceProtocolError, DeviceTimeout, DeviceUnreachable, TasmotaMqttDriver
from sockets.drivers.tasmota_mqtt import parse_mqtt_address
from sockets.simulator import PlugSimulator
from sockets.simulator_mqtt import MqttPlug
from tests.broker import Mosquitto
from tests.processes import require_service
from tests.concurrent import start_at_once


@pytest.fixture
def mqtt_plug(broker):
    with MqttPlug(plug=PlugSimulator(), port=broker.port, topic="lab_plug_1") as device:
        yield device


def driver(broker, topic="lab_plug_1", timeout=(1.0, 1.0), **kwargs) -> TasmotaMqttDriver:
    return TasmotaMqttDriver(address=f"{broker.url}/{topic}", timeout=timeout, **kwargs)


def test_the_address_names_broker_topic_and_credentials():
    address = parse_mqtt_address("mqtts://lab:p%40ss@broker.example:8884/plug_7")
    assert (address.host, address.port, address.topic, address.username, address.password, address.tls) == ("broker.example", 8884, "plug_7", "lab", "p@ss", True)
    assert parse_mqtt_address("mqtt://broker/plug_7", username="u", password="p").port == 1883
    for bad in ("http://broker/plug", "mqtt://broker/", "mqtt://broker/a/b", "mqtt://broker/+"):
        with pytest.raises(DeviceError):
            parse_mqtt_address(bad)


def test_it_switches_reads_and_arms_over_the_broker(broker, mqtt_plug):
    plug = driver(broker)
    assert plug.get_power() is False
    assert plug.set_power(True, off_after=30) is True and mqtt_plug.plug.is_on
    assert 29 <= plug.read_off_timer() <= 30, "PulseTime armed before Power On, as over HTTP"
    on, reading = plug.read_state()
    assert on and reading.power_w == 60 and reading.total_kwh >= 12.345
    assert plug.device_info().name == "Lab Plug"
    assert plug.set_power(False) is False and not mqtt_plug.plug.is_on
    assert mqtt_plug.plug.commands == ["Power", "PulseTime 130", "Power On", "PulseTime1", "Status 0", "Status 0", "Power Off"]


def test_each_answer_is_matched_to_its_own_command_under_concurrent_calls(broker, mqtt_plug):
    """Readers of relay, meter and timer at once: each gets the answer to what it asked, never another's."""
    plug = driver(broker)
    plug.set_power(True, off_after=0)
    results, errors = [], []

    def ask(kind):
        try:
            for _ in range(10):
                value = {"relay": plug.get_power, "meter": lambda: plug.read_energy().power_w, "timer": plug.read_off_timer}[kind]()
                results.append((kind, value))
        except DeviceError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(kind,)) for kind in ("relay", "meter", "timer") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 60
    assert {value for kind, value in results if kind == "relay"} == {True}
    assert {value for kind, value in results if kind == "meter"} == {60.0}
    assert {value for kind, value in results if kind == "timer"} == {0.0}


def test_an_answer_from_another_device_is_not_taken(broker, mqtt_plug):
    with MqttPlug(plug=PlugSimulator(), port=broker.port, topic="lab_plug_2") as other:
        other.plug.press_button()  # the other plug is ON and says so
        assert driver(broker).get_power() is False and driver(broker, topic="lab_plug_2").get_power() is True


def test_faults_have_their_precise_kind(broker, mqtt_plug):
    mqtt_plug.silent = True
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no answer to Power within 1 s"):
        driver(broker).get_power()
    assert time.monotonic() - started < 2
    mqtt_plug.silent = False
    with pytest.raises(DeviceProtocolError, match="rejected"):
        driver(broker, channel=3).get_power()  # a relay the plug does not have
    mqtt_plug.plug.set_fault("http500", count=1)  # the firmware's {"Command":"Error"}
    with pytest.raises(DeviceProtocolError, match="rejected"):
        driver(broker).set_power(True)
    mqtt_plug.plug.set_fault("garbage", count=1)  # not JSON: no answer to this command, as over MQTT it cannot be told from noise
    with pytest.raises(DeviceTimeout):
        driver(broker).set_power(True)
    assert not mqtt_plug.plug.is_on and driver(broker).get_power() is False, "neither fault switched anything"
    with pytest.raises(DeviceTimeout):
        driver(broker, topic="nobody_here").get_power()
    with pytest.raises(DeviceUnreachable, match="broker not"):
        TasmotaMqttDriver(address="mqtt://127.0.0.1:9/lab_plug_1", timeout=(0.5, 0.5)).get_power()


def test_broker_credentials_refused_and_accepted():
    secured = Mosquitto(users={"lab": "broker-pass"})
    require_service("Mosquitto", secured.binary is not None, "the `mosquitto` command is not installed (apt-get install mosquitto)")
    secured.start()
    try:
        device = MqttPlug(plug=PlugSimulator(), port=secured.port, topic="secure_plug")
        device.client.username_pw_set("lab", "broker-pass")
        with device:
            with pytest.raises(DeviceUnreachable, match="not connected"):
                TasmotaMqttDriver(address=f"mqtt://wrong:creds@127.0.0.1:{secured.port}/secure_plug", timeout=(1.0, 1.0)).get_power()
            assert TasmotaMqttDriver(address=f"mqtt://127.0.0.1:{secured.port}/secure_plug", username="lab", password="broker-pass",
                                     timeout=(1.0, 1.0)).get_power() is False
    finally:
        secured.stop()


def test_mqtts_verifies_the_broker_against_the_labs_own_ca(settings):
    secured = Mosquitto(tls=True)
    require_service("Mosquitto", secured.binary is not None, "the `mosquitto` command is not installed (apt-get install mosquitto)")
    secured.start()
    try:
        with MqttPlug(plug=PlugSimulator(), port=secured.port, topic="tls_plug") as device:  # the plug on the broker's plain listener
            address = f"mqtts://127.0.0.1:{secured.tls_port}/tls_plug"
            with pytest.raises(DeviceUnreachable, match="certificate verify failed"):
                TasmotaMqttDriver(address=address, timeout=(1.0, 1.0)).get_power()  # the system's CAs do not know the lab's
            settings.SMARTSOCKET_MQTT_CA_FILE = secured.ca_file + ".moved"
            with pytest.raises(DeviceUnreachable, match="CA file"):  # a device fault the services handle, not a crash
                TasmotaMqttDriver(address=address, timeout=(1.0, 1.0)).get_power()
            settings.SMARTSOCKET_MQTT_CA_FILE = secured.ca_file
            assert TasmotaMqttDriver(address=address, timeout=(1.0, 1.0)).set_power(True) is True and device.plug.is_on
    finally:
        secured.stop()


def test_a_broker_client_no_command_uses_any_more_is_closed(broker, mqtt_plug, monkeypatch):
    """A socket's broker credentials changed: the client made with the old ones does not stay connected for good."""
    from sockets.drivers import tasmota_mqtt

    monkeypatch.setattr(tasmota_mqtt, "BROKER_IDLE_SECONDS", 0.3)
    assert TasmotaMqttDriver(address=f"mqtt://before:pw@127.0.0.1:{broker.port}/lab_plug_1", timeout=(1.0, 1.0)).get_power() is False
    old = next(each for each in tasmota_mqtt._brokers.values() if each.address.username == "before")
    assert old.client.is_connected()
    time.sleep(0.5)
    assert TasmotaMqttDriver(address=f"mqtt://after:pw@127.0.0.1:{broker.port}/lab_plug_1", timeout=(1.0, 1.0)).get_power() is False
    assert old not in tasmota_mqtt._brokers.values() and not old.client.is_connected()
    assert any(each.address.username == "after" for each in tasmota_mqtt._brokers.values()), "the one in use stays"


def test_the_driver_reconnects_after_the_broker_restarts(broker, mqtt_plug):
    plug = driver(broker)
    assert plug.get_power() is False
    broker.kill()
    with pytest.raises(DeviceError):
        plug.get_power()
    broker.start()  # same port; the simulated device reconnects too (paho's backoff)
    deadline = time.monotonic() + 30
    while True:
        try:
            if plug.set_power(True):  # False: the command went out before the device was back (it announced OFF)
                break
        except DeviceError:
            pass
        assert time.monotonic() < deadline, "not reconnected within 30 s"
        time.sleep(0.5)
    assert mqtt_plug.plug.is_on


def test_the_device_publishes_like_the_firmware(broker, mqtt_plug):
    seen = []
    time.sleep(0.3)  # the device's Online (QoS 1) has reached the broker: a later subscriber gets it as retained
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda client, userdata, message: seen.append((message.topic, message.payload.decode(), message.retain))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("#")
    watcher.loop_start()
    try:
        time.sleep(0.3)
        assert ("tele/lab_plug_1/LWT", "Online", True) in seen, "retained Online"
        mqtt_plug.press_button()
        time.sleep(0.3)
        assert ("stat/lab_plug_1/POWER", "ON", False) in seen and ("stat/lab_plug_1/RESULT", json.dumps({"POWER": "ON"}), False) in seen
        mqtt_plug.vanish()
        time.sleep(0.5)
        assert seen[-1] == ("tele/lab_plug_1/LWT", "Offline", False), "the broker published the last will"
    finally:
        watcher.loop_stop()
        watcher.disconnect()


def test_a_wrong_state_answer_is_reported_not_hidden(broker, mqtt_plug):
    mqtt_plug.plug.set_fault("wrong_state", count=1)
    assert driver(broker).set_power(True) is False and not mqtt_plug.plug.is_on


@pytest.mark.django_db(transaction=True)
def test_relays_of_a_strip_on_mqtt_are_independent_sockets_even_at_once(broker):
    from rest_framework.test import APIClient

    from sockets.services import socket_create
    from sockets.simulator import StripSimulator

    with MqttPlug(plug=StripSimulator(relays=4), port=broker.port, topic="strip_1") as strip:
        for n in (1, 2, 3, 4):
            socket_create(name=f"mqtt-strip-{n}", driver="tasmota_mqtt", address=f"{broker.url}/strip_1", channel=n)
        answers = start_at_once([f"mqtt-strip-{n}" for n in (1, 3, 4)], emergencyStopTimeout=60000)
        def relays() -> list[bool]:
            return [strip.plug.relay(n).is_on for n in (1, 2, 3, 4)]

        assert relays() == [True, False, True, True] and all(answer["triggeredPowerOn"] for answer in answers.values())
        APIClient().put(f"/api/instance/{answers['mqtt-strip-3']['instance']['id']}")
        assert relays() == [True, False, False, True], "switching relay 3 leaves 1, 2, 4 as they are"
        assert 55 < strip.plug.relay(4).pulse_remaining_s <= 66, "PulseTime4 armed for relay 4"
