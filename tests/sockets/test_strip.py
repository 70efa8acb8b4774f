"""A Tasmota power strip: one socket per relay (`channel`), over real HTTP against the strip simulator."""

import pytest
from rest_framework.test import APIClient

from instances.models import Instance, StopReason
from instances.tasks import monitor_socket
from sockets.drivers import DeviceProtocolError, TasmotaHttpDriver
from sockets.models import Socket
from sockets.services import socket_create
from sockets.simulator import SimulatorServer, StripSimulator
from tests.concurrent import start_at_once


@pytest.fixture
def strip():
    with SimulatorServer(plug=StripSimulator(relays=4)) as server:
        yield server


@pytest.fixture
def strip_sockets(strip) -> list[Socket]:
    return [socket_create(name=f"strip-{n}", address=strip.url, channel=n) for n in (1, 2, 3, 4)]


def relays(strip) -> list[bool]:
    return [strip.plug.relay(n).is_on for n in (1, 2, 3, 4)]


def test_a_relay_the_strip_does_not_have_is_a_clear_error(strip):
    with pytest.raises(DeviceProtocolError, match="Power5"):
        TasmotaHttpDriver(address=strip.url, channel=5, timeout=(0.5, 0.5)).get_power()


@pytest.mark.django_db(transaction=True)
def test_relays_of_one_strip_are_independent_sockets_even_at_once(strip, strip_sockets):
    answers = start_at_once(["strip-2", "strip-3", "strip-4"], emergencyStopTimeout=60000)
    assert relays(strip) == [False, True, True, True] and all(answer["triggeredPowerOn"] for answer in answers.values())
    assert 60 < strip.plug.relay(3).pulse_remaining_s <= 66 and strip.plug.pulse_remaining_s == 0, "PulseTime3 for relay 3 only"

    APIClient().put(f"/api/instance/{answers['strip-2']['instance']['id']}")
    assert relays(strip) == [False, False, True, True], "switching relay 2 leaves 1, 3, 4 as they are"
    commands = strip.plug.commands
    assert "Power2 Off" in commands and not any(command.startswith(("Power3 Off", "Power4 Off", "Power Off")) for command in commands)
    socket = APIClient().get("/api/sockets/strip-3").json()
    assert socket["channel"] == 3 and socket["observedPower"] == "ON" and socket["capabilities"]["perChannelEnergy"] is False


@pytest.mark.django_db
def test_a_press_on_one_relay_ends_only_its_holders(api, strip, strip_sockets):
    mine = api.post("/api/instance", {"socket": "strip-3"}).json()["instance"]["id"]
    other = api.post("/api/instance", {"socket": "strip-1"}).json()["instance"]["id"]
    strip.plug.relay(3).press_button()
    for socket in Socket.objects.filter(name__in=["strip-1", "strip-3"]):
        Socket.objects.filter(pk=socket.pk).update(next_sample_at=None)
        monitor_socket(socket.pk)
    assert Instance.objects.get(pk=mine).stop_reason == StopReason.MANUAL
    assert Instance.objects.get(pk=other).is_running and strip.plug.relay(1).is_on
