"""DESIGN §6.4 with real processes: kill -9 web, workers and beat at once while a holder with a deadline
has the plug ON — the plug switches itself off by the timer the service armed, at the deadline plus
SMARTSOCKET_FAILSAFE_MARGIN (default 5 s). Embedded broker always; Redis when REDIS_URL names a server."""
import time

import pytest
import requests

from instances.models import Instance
from sockets.services import socket_create
from tests.devices import OtherDevice
from tests.processes import eventually

from .stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["embedded", "redis"])
def stack(request, socket, simulator):
    yield from Stack(broker=request.param, plug_url=simulator.url).run()


def kill_everything(stack: Stack) -> float:
    stack.kill_background()
    stack.web.kill()
    return time.time()


def switched_off_by_its_timer(plug, within: float) -> float:
    limit = time.monotonic() + within
    while time.monotonic() < limit:
        offs = [at for at, on, source in plug.transitions if not on and source == "pulsetime"]
        if offs:
            return offs[-1]
        time.sleep(0.05)
    pytest.fail(f"the plug did not switch itself off within {within} s; transitions {plug.transitions}")


def test_the_plug_switches_itself_off_when_the_whole_service_is_dead(stack, plug):
    answer = requests.post(f"{stack.api}/instance", data={"emergencyStopTimeout": 4000}, timeout=10).json()
    deadline = Instance.objects.get(pk=answer["instance"]["id"]).deadline_at.timestamp()
    killed = kill_everything(stack)
    assert plug.is_on and killed < deadline, "killed while the holder had the plug"
    off = switched_off_by_its_timer(plug, within=deadline + 5 + 1 - time.time())
    print(f"failsafe: OFF {off - deadline:.2f} s after the deadline, nothing of the service running")
    assert deadline + 4.5 <= off <= deadline + 6.0


def test_a_renewal_moves_the_timer_with_the_deadline(stack, plug):
    instance = requests.post(f"{stack.api}/instance", data={"emergencyStopTimeout": 3000}, timeout=10).json()["instance"]
    time.sleep(1.5)
    requests.put(f"{stack.api}/instance/{instance['id']}/renew", data={"emergencyStopTimeout": 4000}, timeout=10).raise_for_status()
    deadline = Instance.objects.get(pk=instance["id"]).deadline_at.timestamp()
    kill_everything(stack)
    off = switched_off_by_its_timer(plug, within=deadline + 5 + 1 - time.time())
    assert deadline + 4.5 <= off <= deadline + 6.0, f"OFF {off - deadline:.2f} s after the renewed deadline"


@pytest.fixture
def embedded_stack(socket, simulator):
    yield from Stack(broker="embedded", plug_url=simulator.url).run()


@pytest.mark.parametrize("driver", ["shelly_rpc", "tasmota_mqtt"])
def test_on_every_driver_the_device_switches_itself_off_when_the_whole_service_is_dead(embedded_stack, driver, request):
    """Shelly: `toggle_after` (whole seconds, rounded up); Tasmota over MQTT: PulseTime sent through the broker."""
    lab = socket_create(name="lab", address="http://127.0.0.1:9")
    device = OtherDevice(driver, request.getfixturevalue("broker") if driver == "tasmota_mqtt" else None, lab)
    request.addfinalizer(device.close)
    answer = requests.post(f"{embedded_stack.api}/instance", data={"socket": "lab", "emergencyStopTimeout": 4000}, timeout=10).json()
    deadline = Instance.objects.get(pk=answer["instance"]["id"]).deadline_at.timestamp()
    killed = kill_everything(embedded_stack)
    assert device.is_on and killed < deadline, "killed while the holder had the plug"
    if driver == "shelly_rpc":
        switch = device.shelly.device.switches[0]
        off = eventually(lambda: next((at for at, on, source in switch.transitions if not on and source == "timer"), None),
                         deadline + 7 - time.time(), "the Shelly switched itself off by its toggle_after")
        assert deadline + 4.5 <= off <= deadline + 6.5
    else:
        off = switched_off_by_its_timer(device.mqtt.plug, within=deadline + 5 + 1 - time.time())
        assert deadline + 4.5 <= off <= deadline + 6.0
