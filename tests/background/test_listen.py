"""The push listener (`manage.py listen`) as its own process against a real Mosquitto: a hand on an MQTT plug is
recorded within a second with no worker running, a blip shorter than any poll is two events, the last will marks the
plug offline, a broker restart loses nothing, sockets added later are followed, and two listeners record once."""
import time

import pytest
from rest_framework.test import APIClient

from audit.models import Event, EventKind
from instances.models import Instance, StopReason
from sockets.models import EnergySample, PowerState, Socket
from sockets.services import socket_create
from sockets.simulator import PlugSimulator
from sockets.simulator_mqtt import MqttPlug
from tests.processes import ManagedProcess, eventually, manage, process_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
WITHIN = 1.5  # the bound for a press to end its instance, default sample intervals


def listen() -> ManagedProcess:
    process = ManagedProcess("listen", manage("listen", "--sync", "0.5"), process_env()).start()
    process.wait_for_log("listen: connected to", timeout=20)
    return process


@pytest.fixture
def device(broker):
    with MqttPlug(plug=PlugSimulator(), port=broker.port, topic="lab_plug_1", teleperiod=1.0) as device:
        yield device


@pytest.fixture
def mqtt_socket(broker, device) -> Socket:
    return socket_create(name="mqtt-plug", driver="tasmota_mqtt", address=f"{broker.url}/lab_plug_1")


@pytest.fixture
def listener(mqtt_socket):
    process = listen()
    try:
        yield process
    finally:
        process.stop()


def start(socket: Socket) -> str:
    answer = APIClient().post("/api/instance", {"socket": socket.name})
    assert answer.status_code == 200, answer.content
    return answer.json()["instance"]["id"]


def test_a_press_on_the_plug_ends_its_instance_within_a_second_and_samples_come_from_telemetry(device, mqtt_socket, listener):
    instance_id = start(mqtt_socket)
    eventually(lambda: EnergySample.objects.filter(socket=mqtt_socket, is_on=True).count() >= 2, 5, "telemetry every TelePeriod became samples")
    pressed = time.time()
    device.press_button()
    eventually(lambda: Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL, WITHIN, "the press ended the instance (manual)")
    stopped = Instance.objects.get(pk=instance_id).stopped_at.timestamp()
    assert stopped - pressed < WITHIN, "stamped when it happened, not at the next poll"
    assert Event.objects.filter(kind=EventKind.MANUAL_OFF, socket=mqtt_socket).count() == 1


def test_an_off_on_blip_shorter_than_any_poll_is_two_events_and_the_instance_ends(device, mqtt_socket, listener):
    instance_id = start(mqtt_socket)
    time.sleep(1.2)  # past PUSH_ECHO: a blip right after the service's own command looks like that command's echo
    device.press_button()
    time.sleep(0.05)
    device.press_button()  # back ON after 50 ms: no poll ever sees it OFF
    eventually(lambda: Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL, WITHIN, "the blip ended the instance")
    eventually(lambda: Event.objects.filter(kind=EventKind.MANUAL_ON, socket=mqtt_socket).exists(), WITHIN, "the hand's ON recorded too")
    assert Event.objects.filter(kind=EventKind.MANUAL_OFF, socket=mqtt_socket).count() == 1
    eventually(lambda: not device.plug.is_on, WITHIN, "nobody holds it: switched OFF again")


def test_the_last_will_marks_the_plug_offline(device, mqtt_socket, listener):
    eventually(lambda: Socket.objects.get(pk=mqtt_socket.pk).is_online, 5, "online once read")
    device.vanish()
    eventually(lambda: not Socket.objects.get(pk=mqtt_socket.pk).is_online, 5, "LWT Offline: offline")
    socket = Socket.objects.get(pk=mqtt_socket.pk)
    assert socket.observed_power == PowerState.UNKNOWN and "last will" in socket.last_error
    assert Event.objects.filter(kind=EventKind.DEVICE_OFFLINE, socket=mqtt_socket).count() == 1


def test_after_a_broker_restart_the_listener_reconnects_and_misses_nothing(broker, device, mqtt_socket, listener):
    instance_id = start(mqtt_socket)
    broker.kill()
    device.plug.press_button()  # a hand while the broker is down: nobody can hear it
    broker.start()
    eventually(lambda: Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL, 40, "re-read on reconnect: the press is recorded")
    assert listener.running


def test_sockets_added_later_are_followed_and_two_listeners_record_once(broker, device, mqtt_socket, listener):
    second = listen()
    try:
        with MqttPlug(plug=PlugSimulator(), port=broker.port, topic="lab_plug_2") as other:
            late = socket_create(name="late-plug", driver="tasmota_mqtt", address=f"{broker.url}/lab_plug_2")
            time.sleep(1.5)  # both listeners re-read the sockets every 0.5 s
            instance_id = start(late)
            other.press_button()
            eventually(lambda: Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL, WITHIN, "the new socket is followed")
            time.sleep(0.5)
            assert Event.objects.filter(kind=EventKind.MANUAL_OFF, socket=late).count() == 1, "two listeners, one record"
            assert Event.objects.filter(kind=EventKind.INSTANCE_STOP, instance_id=instance_id).count() == 1
    finally:
        second.stop()

