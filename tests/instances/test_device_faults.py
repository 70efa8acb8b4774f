"""A device fault at each step answers the documented error and leaves the database consistent."""
import pytest

from instances.models import Instance
from sockets.models import PowerPeriod, PowerState, Socket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_device_timeouts")]
FAULTS = ["timeout", "http500", "garbage", "refuse"]


def start(api) -> dict:
    response = api.post("/api/instance")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_during_start_creates_nothing(api, socket, plug, fault):
    plug.set_fault(fault)
    response = api.post("/api/instance", {"emergencyStopTimeout": "1000"})
    assert response.status_code == 500 and response.json()["code"] == "socket_device_error"
    assert "default" in response.json()["message"]
    assert not Instance.objects.exists() and not PowerPeriod.objects.exists()
    socket.refresh_from_db()
    assert socket.observed_power == PowerState.UNKNOWN and not socket.is_online and socket.last_error
    plug.clear_fault()
    assert start(api)["triggeredPowerOn"] is True and plug.is_on


def test_a_plug_that_does_not_turn_on_is_409_and_creates_nothing(api, socket, plug):
    plug.set_fault("wrong_state", count=1)
    response = api.post("/api/instance")
    assert response.status_code == 409 and response.json()["code"] == "socket_power_failed"
    assert not Instance.objects.exists() and not PowerPeriod.objects.exists() and not plug.is_on
    assert Socket.objects.get().desired_power == PowerState.OFF


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_during_the_last_stop_keeps_the_instance_running(api, socket, plug, fault):
    instance_id = start(api)["instance"]["id"]
    plug.set_fault(fault)
    response = api.put(f"/api/instance/{instance_id}")
    assert response.status_code == 500
    instance = Instance.objects.get()
    assert instance.is_running and instance.stop_reason == ""
    period = PowerPeriod.objects.get()
    assert period.power_off_at is None
    socket.refresh_from_db()
    assert socket.desired_power == PowerState.ON and socket.observed_power == PowerState.UNKNOWN
    plug.clear_fault()
    stopped = api.put(f"/api/instance/{instance_id}").json()
    assert stopped["triggeredPowerOff"] is True and not plug.is_on
    assert PowerPeriod.objects.get().power_off_by == instance_id


def test_a_plug_that_does_not_turn_off_is_409_and_the_instance_keeps_running(api, socket, plug):
    instance_id = start(api)["instance"]["id"]
    plug.set_fault("wrong_state", count=1)
    response = api.put(f"/api/instance/{instance_id}")
    assert response.status_code == 409
    assert Instance.objects.get().is_running and plug.is_on
    assert PowerPeriod.objects.get().power_off_at is None


def test_a_stop_that_leaves_others_running_needs_no_device(api, socket, plug):
    first, second = start(api)["instance"]["id"], start(api)["instance"]["id"]
    plug.set_fault("refuse")
    response = api.put(f"/api/instance/{first}")
    assert response.status_code == 200 and response.json()["triggeredPowerOff"] is False
    assert Instance.objects.get(pk=second).is_running


@pytest.mark.parametrize("fault", FAULTS)
def test_emergency_stop_commits_the_decision_even_when_the_device_fails(api, socket, plug, fault):
    instance_id = start(api)["instance"]["id"]
    plug.set_fault(fault)
    response = api.post("/api/emergency-stop")
    assert response.status_code == 500 and response.json()["code"] == "socket_device_error"
    socket.refresh_from_db()
    # The instances are stopped and the socket is locked: reconcile drives the plug OFF.
    assert socket.is_emergency_stopped and socket.desired_power == PowerState.OFF
    assert socket.desired_cause == "emergency" and socket.observed_power == PowerState.UNKNOWN
    assert Instance.objects.get(pk=instance_id).stop_reason == "emergency"
    assert PowerPeriod.objects.get().power_off_at is None  # closes once the device confirms OFF
    plug.clear_fault()
    assert api.post("/api/instance").status_code == 409


@pytest.mark.parametrize("fault", ["timeout", "http500", "garbage"])
def test_a_fault_on_the_power_on_command_itself_creates_nothing(api, socket, plug, fault):
    plug.set_fault(fault, only="Power On")
    response = api.post("/api/instance")
    assert response.status_code == 500
    assert plug.commands[0] == "Status 0" and plug.commands[-1] == "Power On"
    assert not Instance.objects.exists() and not PowerPeriod.objects.exists()
    socket.refresh_from_db()
    assert socket.desired_power == PowerState.OFF and socket.observed_power == PowerState.UNKNOWN
