"""The push listener's lanes on PostgreSQL: a plug that never answers holds up only its own lane. (On SQLite a
transaction waiting on a device holds the whole database's write lock, so there it would hold up everything.)"""
import time

import pytest

from instances.models import Instance, StopReason
from sockets.services import socket_create
from sockets.simulator import PlugSimulator
from sockets.simulator_mqtt import MqttPlug
from tests.background.test_listen import WITHIN, listen, start
from tests.processes import eventually

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def device(broker):
    with MqttPlug(plug=PlugSimulator(), port=broker.port, topic="lab_plug_1") as device:
        yield device


def test_a_plug_that_never_answers_does_not_hold_up_another(postgres, broker, device):
    with MqttPlug(plug=PlugSimulator(), port=broker.port, topic="silent_plug") as silent:
        silent.silent = True  # connected, takes commands, never answers: every command to it waits out the timeout
        mqtt_socket = socket_create(name="mqtt-plug", driver="tasmota_mqtt", address=f"{broker.url}/lab_plug_1")
        socket_create(name="silent-plug", driver="tasmota_mqtt", address=f"{broker.url}/silent_plug")  # the next id: another lane
        instance_id = start(mqtt_socket)
        process = listen()
        try:
            for _ in range(2):  # the silent plug "switched ON" with nobody holding it: each costs a Power Off that times out
                silent.client.publish("stat/silent_plug/POWER", "ON").wait_for_publish(2)
            time.sleep(0.2)
            device.press_button()
            eventually(lambda: Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL, WITHIN,
                       "the press on the answering plug, while the silent one's Power Off still waits")
        finally:
            process.stop()
