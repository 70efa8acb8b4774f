"""kill -9 of worker and beat while deadlines and callbacks are pending (PostgreSQL, Redis): after the
restart each is honoured — the overdue ones at once, the others on time — and none twice; on every driver."""
import time
from collections import Counter

import pytest
import requests

from instances.models import Callback, Instance, StopReason
from sockets.models import PowerPeriod
from sockets.services import socket_create
from tests.background.stack import Stack
from tests.devices import OtherDevice

from .conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
DOWNTIME = 3.0  # seconds worker and beat stay dead; the short deadlines and waits fall due in it
AT_ONCE = 3.0  # seconds after the restart by which everything overdue is done
ON_TIME = 1.5  # seconds after its due time by which a deadline or callback due after the restart is done


def post(url: str, **kwargs) -> dict:
    response = requests.request(kwargs.pop("method", "POST"), url, timeout=10, allow_redirects=False, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def offs(plug) -> list[float]:
    return [at for at, on, _source in plug.transitions if not on]


@pytest.mark.timeout(120)
def test_deadlines_and_callbacks_survive_kill_9_of_worker_and_beat(production_stack, socket, plug, plugs, receiver):
    stack, api = production_stack, production_stack.api
    lone, shared = plugs["plug-0"], plugs["plug-1"]
    t0 = time.time()
    early = post(f"{api}/instance", data={"emergencyStopTimeout": "1500"})["instance"]["id"]  # overdue at restart
    late = post(f"{api}/instance", data={"emergencyStopTimeout": "8000"})["instance"]["id"]  # due after restart
    lone_id = post(f"{api}/instance", data={"socket": "plug-0", "emergencyStopTimeout": "1500"})["instance"]["id"]
    sws_early = post(f"{api}/start-wait-stop", data={"socket": "plug-1", "duration": "1"}, headers={"CPEE-CALLBACK": receiver.url("/sws-early")})
    sws_late = post(f"{api}/start-wait-stop", data={"socket": "plug-1", "duration": "7"}, headers={"CPEE-CALLBACK": receiver.url("/sws-late")})
    for path, duration in (("/wait-a", 1), ("/wait-b", 1.2), ("/wait-late", 7)):
        assert post(f"{api}/wait", method="GET", params={"duration": duration}, headers={"CPEE-CALLBACK": receiver.url(path)}) == {"waiting": True}
    due = {row.url.rsplit("/", 1)[1]: row.due_at.timestamp() for row in Callback.objects.exclude(url="")}
    late_deadline = Instance.objects.get(pk=late).deadline_at.timestamp()

    stack.kill_background()
    time.sleep(max(t0 + DOWNTIME - time.time(), 0))
    assert not receiver.calls, "nothing is delivered while worker and beat are dead"
    assert not Instance.objects.filter(stopped_at__isnull=False).exists() and plug.is_on and lone.is_on and shared.is_on

    restarted = time.time()  # before: the restarted worker may act before start_background() returns
    stack.start_background()
    # overdue: at once
    eventually(lambda: not lone.is_on, AT_ONCE, "the overdue deadline on plug-0 powered it off")
    eventually(lambda: len(receiver.calls) >= 3, AT_ONCE, "the three overdue callbacks arrived")
    assert all(at >= restarted for at in offs(lone))
    eventually(lambda: Instance.objects.get(pk=early).stop_reason == StopReason.TIMEOUT, AT_ONCE, "the overdue deadline on the default socket")
    assert plug.is_on, "the late holder keeps the default plug on"
    assert Instance.objects.get(pk=sws_early["instance"]["id"]).stop_reason == StopReason.REQUESTED and shared.is_on
    # due after the restart: on time, not before
    eventually(lambda: not plug.is_on, late_deadline + ON_TIME - time.time(), "the deadline due after the restart powered the plug off")
    assert offs(plug)[-1] >= late_deadline
    eventually(lambda: not shared.is_on, due["sws-late"] + ON_TIME - time.time(), "the start-wait-stop due after the restart stopped")
    eventually(lambda: len(receiver.calls) >= 5, max(due["wait-late"], due["sws-late"]) + ON_TIME - time.time(), "all five callbacks arrived")
    time.sleep(2.0)  # room for a duplicate to show up

    arrivals = {path.lstrip("/"): (at, body) for at, path, body in receiver.calls}
    assert Counter(path for _, path, _ in receiver.calls) == Counter({f"/{name}": 1 for name in due}), "each callback exactly once"
    for name, due_at in due.items():
        assert arrivals[name][0] >= due_at, f"{name} arrived before it was due"
    assert arrivals["wait-a"][1] == arrivals["wait-late"][1] == {"waiting": False}
    assert arrivals["sws-late"][1]["instance"]["id"] == sws_late["instance"]["id"] and not arrivals["sws-late"][1]["instance"]["isRunning"]
    assert all(row.delivered_at is not None and row.attempts == 1 for row in Callback.objects.exclude(url=""))
    assert (Instance.objects.get(pk=late).stop_reason, Instance.objects.get(pk=lone_id).stop_reason) == (StopReason.TIMEOUT, StopReason.TIMEOUT)
    assert not Instance.objects.filter(stopped_at=None).exists()
    for name, device in (("default", plug), ("plug-0", lone), ("plug-1", shared)):
        periods = PowerPeriod.objects.filter(socket__name=name)
        assert periods.count() == 1 and periods.get().power_off_at is not None, f"{name}: one closed power period"
        assert device.power_on_commands == device.power_off_commands == 1, f"{name}: switched once each way"
        assert not device.is_on
    assert PowerPeriod.objects.get(socket__name="default").power_off_by == "<timeout>"


@pytest.fixture
def stack_with_a_late_failsafe(postgres, redis_url, transactional_db, socket, simulator):
    """The production stack with the device's own timer 30 s after a deadline: starting worker and beat again takes
    seconds, and the point is that they, not the device's timer, switch it OFF."""
    yield from Stack(broker="redis", plug_url=simulator.url, SMARTSOCKET_FAILSAFE_MARGIN="30").run()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("driver", ["shelly_rpc", "tasmota_mqtt"])
def test_on_every_driver_a_deadline_missed_while_worker_and_beat_were_dead_is_enforced_at_the_restart(stack_with_a_late_failsafe, driver, request):
    """The restarted worker drives a Shelly or an MQTT plug (a new broker connection) as it drives a Tasmota over HTTP."""
    lab = socket_create(name="lab", address="http://127.0.0.1:9")
    device = OtherDevice(driver, request.getfixturevalue("broker") if driver == "tasmota_mqtt" else None, lab)
    request.addfinalizer(device.close)
    stack, api = stack_with_a_late_failsafe, stack_with_a_late_failsafe.api
    instance_id = post(f"{api}/instance", data={"socket": "lab", "emergencyStopTimeout": "1500"})["instance"]["id"]
    assert device.is_on

    stack.kill_background()
    time.sleep(DOWNTIME)  # the deadline passes; the device's own timer (deadline + 30 s) has not run out
    assert device.is_on and Instance.objects.get(pk=instance_id).is_running
    restarted = time.time()
    stack.start_background()
    eventually(lambda: not device.is_on, AT_ONCE, "the overdue deadline switched the device OFF after the restart")
    # the relay switches inside the stop's transaction: its rows are there once it commits
    eventually(lambda: PowerPeriod.objects.get(socket=lab).power_off_by == "<timeout>", AT_ONCE, "the period closed by the deadline")
    instance = Instance.objects.get(pk=instance_id)
    assert instance.stop_reason == StopReason.TIMEOUT and instance.stopped_at.timestamp() >= restarted
    if driver == "shelly_rpc":
        assert [source for _, on, source in device.shelly.device.switches[0].transitions] == ["HTTP_in", "HTTP_in"], "switched by the service, not its timer"
    else:
        assert device.mqtt.plug.power_on_commands == device.mqtt.plug.power_off_commands == 1
