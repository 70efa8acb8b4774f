"""Device faults during start, stop and emergency stop, through gunicorn on PostgreSQL: documented codes, consistent rows."""
import pytest
import requests

from instances.models import Instance, StopReason
from sockets.models import PowerPeriod, PowerState
from sockets.services.reconcile import socket_reconcile
from tests.devices import OtherDevice
from tests.processes import eventually, free_port, gunicorn, process_env

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
# DESIGN §4: an unreachable or garbled device is a 500, a device in the wrong state a 409.
FAULTS = [("timeout", 500, "socket_device_error"), ("http500", 500, "socket_device_error"),
          ("garbage", 500, "socket_device_error"), ("refuse", 500, "socket_device_error"),
          ("wrong_state", 409, "socket_power_failed")]
FAST_DEVICE = {"SMARTSOCKET_DEVICE_CONNECT_TIMEOUT": "0.5", "SMARTSOCKET_DEVICE_READ_TIMEOUT": "0.5"}


@pytest.fixture(scope="module")
def web_fast_device(postgres, django_db_setup):
    """One gunicorn for the module (start-up costs seconds); each test's rows are flushed under it."""
    port = free_port()
    server = gunicorn(port=port, workers=4, threads=4, env=process_env(**FAST_DEVICE))
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        server.stop()


@pytest.fixture
def api(postgres, transactional_db, socket, web_fast_device) -> str:
    return web_fast_device


def call(method: str, url: str, **kwargs) -> requests.Response:
    response = requests.request(method, url, timeout=30, allow_redirects=False, **kwargs)
    assert response.headers["Content-Type"] == "application/json", response.text[:300]
    return response


def start(api: str) -> str:
    response = call("POST", f"{api}/instance", data={"emergencyStopTimeout": "600000"})
    assert response.status_code == 200, response.text
    return response.json()["instance"]["id"]


def assert_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["message"]


@pytest.mark.parametrize(("fault", "status", "code"), FAULTS)
def test_a_fault_during_start_creates_nothing(api, socket, plug, fault, status, code):
    plug.set_fault(fault)
    assert_error(call("POST", f"{api}/instance"), status, code)
    plug.clear_fault()

    assert not Instance.objects.exists() and not PowerPeriod.objects.exists()
    socket.refresh_from_db()
    assert socket.observed_power == PowerState.UNKNOWN and socket.desired_power == PowerState.OFF and socket.last_error
    assert not plug.is_on
    # the fault gone, the next start works as if nothing happened
    start(api)
    assert plug.is_on and PowerPeriod.objects.get().power_off_at is None


@pytest.mark.parametrize(("fault", "status", "code"), FAULTS)
def test_a_fault_during_the_last_stop_keeps_the_instance_running_and_the_plug_on(api, socket, plug, fault, status, code):
    instance_id = start(api)
    plug.set_fault(fault)
    assert_error(call("PUT", f"{api}/instance/{instance_id}"), status, code)
    plug.clear_fault()

    instance = Instance.objects.get(pk=instance_id)
    assert instance.is_running and instance.stop_reason == ""
    assert PowerPeriod.objects.get().power_off_at is None
    socket.refresh_from_db()
    assert socket.desired_power == PowerState.ON and plug.is_on  # what the database says, the plug is
    # the process may simply retry its stop
    response = call("PUT", f"{api}/instance/{instance_id}")
    assert response.status_code == 200 and response.json()["triggeredPowerOff"] is True
    assert not plug.is_on and PowerPeriod.objects.get().power_off_at is not None


@pytest.mark.parametrize(("fault", "status", "code"), FAULTS)
def test_a_fault_during_emergency_stop_still_stops_and_locks_everything(api, socket, plug, fault, status, code):
    first, second = start(api), start(api)
    plug.set_fault(fault)
    assert_error(call("POST", f"{api}/emergency-stop/{first}"), status, code)

    for instance in Instance.objects.all():
        assert not instance.is_running and instance.stop_reason == StopReason.EMERGENCY
    socket.refresh_from_db()
    assert socket.is_emergency_stopped and socket.desired_power == PowerState.OFF
    assert_error(call("POST", f"{api}/instance"), 409, "socket_emergency_stopped")
    assert Instance.objects.count() == 2
    # a process stopping its instance after the emergency stop gets a 2xx, even while the plug is faulty
    assert call("PUT", f"{api}/instance/{second}").status_code == 200
    plug.clear_fault()


# The same matrix on the other drivers, each with the faults its transport can have. A Shelly's Switch.Set answers
# only `was_on`, never the state it left, so a Shelly has no wrong-state answer to check (README, Devices).
OTHER_FAULTS = [("shelly_rpc", "timeout", 500, "socket_device_error"), ("shelly_rpc", "http500", 500, "socket_device_error"),
                ("shelly_rpc", "garbage", 500, "socket_device_error"), ("shelly_rpc", "refuse", 500, "socket_device_error"),
                ("tasmota_mqtt", "timeout", 500, "socket_device_error"), ("tasmota_mqtt", "http500", 500, "socket_device_error"),
                ("tasmota_mqtt", "garbage", 500, "socket_device_error"), ("tasmota_mqtt", "refuse", 500, "socket_device_error"),
                ("tasmota_mqtt", "wrong_state", 409, "socket_power_failed")]


@pytest.fixture
def other_device(request, api, socket):
    driver = request.node.callspec.params["driver"]
    device = OtherDevice(driver, request.getfixturevalue("broker") if driver == "tasmota_mqtt" else None, socket)
    yield device
    device.close()


def start_once_back(api: str) -> str:
    """Start as soon as the device answers again (an MQTT client reconnects to a restarted broker with a backoff)."""
    return eventually(lambda: (response := requests.post(f"{api}/instance", data={"emergencyStopTimeout": "600000"}, timeout=30)).status_code == 200
                      and response.json()["instance"]["id"], timeout=15, what="a start once the device is back")


@pytest.mark.parametrize(("driver", "fault", "status", "code"), OTHER_FAULTS)
def test_on_every_driver_a_fault_during_start_creates_nothing(api, socket, other_device, driver, fault, status, code):
    other_device.set_fault(fault)
    assert_error(call("POST", f"{api}/instance"), status, code)
    other_device.clear_fault(fault)

    assert not Instance.objects.exists() and not PowerPeriod.objects.exists()
    socket.refresh_from_db()
    assert socket.desired_power == PowerState.OFF and socket.last_error
    assert not other_device.is_on
    start_once_back(api)
    assert other_device.is_on and PowerPeriod.objects.get().power_off_at is None


@pytest.mark.parametrize(("driver", "fault", "status", "code"), OTHER_FAULTS)
def test_on_every_driver_a_fault_during_the_last_stop_keeps_the_instance_running_and_the_plug_on(api, socket, other_device, driver, fault,
                                                                                                  status, code):
    instance_id = start(api)
    other_device.set_fault(fault)
    assert_error(call("PUT", f"{api}/instance/{instance_id}"), status, code)
    other_device.clear_fault(fault)

    instance = Instance.objects.get(pk=instance_id)
    assert instance.is_running and PowerPeriod.objects.get().power_off_at is None
    socket.refresh_from_db()
    assert socket.desired_power == PowerState.ON and other_device.is_on
    eventually(lambda: call("PUT", f"{api}/instance/{instance_id}").status_code == 200, timeout=15, what="the retried stop")
    assert not other_device.is_on and PowerPeriod.objects.get().power_off_at is not None


@pytest.mark.parametrize(("driver", "fault", "status", "code"), OTHER_FAULTS)
def test_on_every_driver_a_fault_during_emergency_stop_still_stops_and_locks_everything(api, socket, other_device, driver, fault, status, code):
    first, second = start(api), start(api)
    other_device.set_fault(fault)
    assert_error(call("POST", f"{api}/emergency-stop/{first}"), status, code)

    assert all(not instance.is_running and instance.stop_reason == StopReason.EMERGENCY for instance in Instance.objects.all())
    socket.refresh_from_db()
    assert socket.is_emergency_stopped and socket.desired_power == PowerState.OFF
    assert_error(call("POST", f"{api}/instance"), 409, "socket_emergency_stopped")
    assert call("PUT", f"{api}/instance/{second}").status_code == 200
    other_device.clear_fault(fault)
    # the device back, reconcile (the worker's, run here) brings the relay to the database's OFF
    eventually(lambda: socket_reconcile(socket_id=socket.pk, force=True) and not other_device.is_on, timeout=15,
               what="the relay OFF once the device answers")
    assert PowerPeriod.objects.get().power_off_at is not None
