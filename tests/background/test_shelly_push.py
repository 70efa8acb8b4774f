"""Shelly webhooks: the service installs them on the device, the device calls them on every switch, a press is
recorded within a second; a wrong secret is a 404 and records nothing."""
import time

import pytest
import requests
from rest_framework.test import APIClient

from audit.models import Event, EventKind
from instances.models import Instance, StopReason
from instances.tasks import monitor_socket
from sockets.models import PowerState, Socket
from sockets.services import socket_create, socket_update
from sockets.shelly_simulator import ShellyServer, ShellySimulator
from tests.processes import eventually

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "s3cret-Pa55"


@pytest.fixture
def shelly():
    with ShellyServer(ShellySimulator(switches=2, password=PASSWORD, app="Plus2PM")) as server:
        yield server


@pytest.fixture
def pushing(settings, live_server, shelly) -> Socket:
    settings.SMARTSOCKET_PUBLIC_URL = live_server.url
    yield socket_create(name="shelly-2", driver="shelly_rpc", address=shelly.url, channel=2, password=PASSWORD)
    # a webhook call still under way would reach the live server while the test's rows are flushed
    assert shelly.device.hooks_quiet(), "the device's webhook calls were answered"


def test_webhooks_are_installed_once_and_follow_an_edit(settings, live_server, shelly, pushing):
    hooks = shelly.device.hooks
    assert sorted((hook["event"], hook["cid"]) for hook in hooks) == [("switch.off", 1), ("switch.on", 1)]
    assert all(hook["urls"][0].startswith(f"{live_server.url}/api/push/shelly/{pushing.push_secret}?output=") for hook in hooks)
    socket_update(socket_id=pushing.pk, password=PASSWORD)  # nothing that moves them: nothing changes
    socket_update(socket_id=pushing.pk, channel=1)
    assert len(shelly.device.hooks) == 4 and {hook["cid"] for hook in shelly.device.hooks} == {0, 1}, "the new channel has its own"
    settings.SMARTSOCKET_PUBLIC_URL = "http://10.9.9.9:8000"
    socket_update(socket_id=pushing.pk, channel=2)
    mine = [hook for hook in shelly.device.hooks if hook["cid"] == 1]
    assert len(mine) == 2 and all(hook["urls"][0].startswith("http://10.9.9.9:8000/") for hook in mine), "updated in place, no duplicates"


def test_a_press_on_the_device_ends_its_holder_within_a_second(shelly, pushing):
    instance_id = APIClient().post("/api/instance", {"socket": "shelly-2"}).json()["instance"]["id"]
    assert shelly.device.is_on(1)
    pressed = time.time()
    shelly.device.press_button(1)
    eventually(lambda: Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL, 1.5, "the webhook ended the holder (manual)")
    assert Instance.objects.get(pk=instance_id).stopped_at.timestamp() - pressed < 1.5
    assert Event.objects.filter(kind=EventKind.MANUAL_OFF, socket=pushing).count() == 1
    eventually(lambda: any(url.endswith("output=off") and status == 200 for url, status in shelly.device.hook_calls), 3, "the OFF webhook answered")
    eventually(lambda: any(url.endswith("output=on") and status == 200 for url, status in shelly.device.hook_calls), 3,
               "the service's own ON called its webhook too (and recorded nothing)")
    assert Event.objects.filter(kind=EventKind.MANUAL_ON).count() == 0


def test_a_press_switching_it_on_while_nobody_holds_it_is_recorded_and_undone_within_two_seconds(shelly, pushing):
    """DESIGN §6.3 through the webhook alone: no poll or watch runs after the first look."""
    monitor_socket(pushing.pk)  # the service has seen it OFF: an ON now is a hand's
    assert Socket.objects.get(pk=pushing.pk).observed_power == PowerState.OFF
    pressed = time.time()
    assert shelly.device.press_button(1) is True
    eventually(lambda: not shelly.device.is_on(1), 2.0, "the service switched it OFF again")
    off = shelly.device.switches[1].transitions[-1]
    assert off[0] - pressed < 2.0 and off[1:] == (False, "HTTP_in")
    # the relay switches inside the transaction that records it: the rows are there once it commits
    eventually(lambda: Event.objects.filter(kind=EventKind.POWER_OFF, socket=pushing).count() == 1, 1.0, "its period closed")
    assert Event.objects.get(kind=EventKind.MANUAL_ON, socket=pushing).data["by"] == "<manual>"
    assert not Instance.objects.exists()


def test_an_off_on_blip_by_hand_is_two_events_and_ends_the_holder(shelly, pushing):
    """Back ON before the switch.off call arrives: the re-read finds it ON, but switched by a hand (`source`)."""
    instance_id = APIClient().post("/api/instance", {"socket": "shelly-2"}).json()["instance"]["id"]
    shelly.device.press_button(1)
    time.sleep(0.02)
    shelly.device.press_button(1)  # back ON after 20 ms: no poll would ever see it OFF
    eventually(lambda: Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL, 1.5, "the blip ended the holder")
    eventually(lambda: not shelly.device.is_on(1), 2.0, "nobody holds it: switched OFF again")
    eventually(lambda: Event.objects.filter(kind=EventKind.POWER_OFF, socket=pushing).count() == 1, 1.0, "the hand's ON period closed")
    assert Event.objects.filter(kind=EventKind.MANUAL_OFF, socket=pushing).count() == Event.objects.filter(kind=EventKind.MANUAL_ON).count() == 1


def test_the_services_own_quick_off_and_on_is_no_blip_whenever_its_calls_arrive(shelly, pushing):
    """A stop and a new start within milliseconds: the switch.off call of the stop may arrive after the start's ON."""
    client = APIClient()
    first = client.post("/api/instance", {"socket": "shelly-2"}).json()["instance"]["id"]
    client.put(f"/api/instance/{first}")
    second = client.post("/api/instance", {"socket": "shelly-2"}).json()["instance"]["id"]
    eventually(lambda: len(shelly.device.hook_calls) >= 3, 3, "the device called on, off and on")
    time.sleep(0.3)
    assert Instance.objects.get(pk=second).is_running and shelly.device.is_on(1)
    assert not Event.objects.filter(kind__in=[EventKind.MANUAL_OFF, EventKind.MANUAL_ON]).exists()


def test_an_unknown_or_wrong_secret_is_a_404_and_records_nothing(live_server, shelly, pushing):
    before = Event.objects.count()
    wrong = pushing.push_secret[:-1] + ("A" if pushing.push_secret[-1] != "A" else "B")  # one character off
    for secret in ("x" * 32, wrong, "short"):
        answer = requests.get(f"{live_server.url}/api/push/shelly/{secret}", params={"output": "off"}, timeout=5)
        assert answer.status_code == 404 and answer.json()["code"] == "socket_not_found" and "shelly-2" not in answer.text
    assert Event.objects.count() == before
