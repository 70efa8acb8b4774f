"""Shelly Gen2+ (`shelly_rpc`) against the project's Shelly simulator over real HTTP: the driver, the whole service
on a Shelly socket, channels of a four-switch device, faults with their precise kind."""
import time

import pytest
from django.utils import timezone

from audit.models import Event, EventKind
from instances.models import Instance, StopReason
from instances.services.push import socket_follow_push
from instances.tasks import monitor_socket
from sockets.drivers import DeviceAuthError, DeviceProtocolError, DeviceTimeout, DeviceUnreachable, ShellyRpcDriver
from sockets.models import EnergySample, PowerState, Socket
from sockets.services import socket_create
from sockets.shelly_simulator import ShellyServer, ShellySimulator
from tests.concurrent import start_at_once
from tests.processes import eventually

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def shelly():
    with ShellyServer(ShellySimulator(switches=4, password=PASSWORD, app="Pro4PM")) as server:
        yield server


def driver(server, channel=1, password=PASSWORD, timeout=(0.5, 0.5)) -> ShellyRpcDriver:
    return ShellyRpcDriver(address=server.url, channel=channel, password=password, timeout=timeout)


def test_the_driver_switches_reads_and_arms_the_flip_back_timer(shelly):
    plug = driver(shelly)
    assert plug.device_info().hostname == shelly.device.device_id and plug.get_power() is False
    assert plug.set_power(True, off_after=1.2) is True
    assert shelly.device.is_on(0) and 0.5 < plug.read_off_timer() <= 2.0, "toggle_after, rounded up to whole seconds"
    time.sleep(2.2)
    assert not shelly.device.is_on(0) and plug.get_power() is False, "the device switched itself off: the failsafe"
    assert plug.arm_off_timer(30) == 0.0 and not shelly.device.is_on(0), "arming never switches an OFF switch ON"
    plug.set_power(True)
    assert plug.arm_off_timer(30) == 30 and 28 < shelly.device.timer_remaining(0) <= 30
    assert plug.arm_off_timer(0) == 0 and shelly.device.timer_remaining(0) == 0 and shelly.device.is_on(0), "0 clears it, still ON"


def test_after_the_first_digest_challenge_a_call_is_one_round_trip(shelly):
    for _ in range(3):
        driver(shelly).get_power()  # a new driver per call, as the service builds them
    assert shelly.device.challenges == 1 and shelly.device.calls == ["Switch.GetStatus"] * 3


def test_energy_comes_in_kwh_from_the_switchs_own_watt_hours(shelly):
    shelly.device.switches[1].load_w = 3600.0  # 1 Wh a second on switch 1 only
    plug = driver(shelly, channel=2)
    plug.set_power(True)
    time.sleep(0.5)
    on, reading = plug.read_state()
    assert on and reading.power_w == 3600.0 and reading.voltage_v == pytest.approx(230.1)
    assert 0.0003 < reading.total_kwh < 0.002, "Shelly counts Wh, the service kWh"
    assert driver(shelly, channel=1).read_energy().total_kwh == 0, "each switch meters on its own"


def test_faults_have_their_precise_kind(shelly):
    with pytest.raises(DeviceAuthError, match="credentials refused"):
        driver(shelly, password="wrong").get_power()
    with pytest.raises(DeviceAuthError):
        driver(shelly, password="").get_power()
    with pytest.raises(DeviceProtocolError, match="not found"):
        driver(shelly, channel=5).get_power()
    with pytest.raises(DeviceUnreachable, match="refused"):
        ShellyRpcDriver(address="http://127.0.0.1:9", timeout=(0.5, 0.5)).get_power()
    shelly.device.fault = "http500"
    with pytest.raises(DeviceProtocolError, match=r"Switch.Set refused \(-114\): Unavailable"):
        driver(shelly).set_power(True)
    shelly.device.fault = "garbage"
    with pytest.raises(DeviceProtocolError, match="not JSON"):
        driver(shelly).set_power(True)
    shelly.device.fault = "timeout"
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no answer within 0.5 s"):
        driver(shelly).get_power()
    assert time.monotonic() - started < 2
    shelly.device.fault = None
    assert driver(shelly).get_power() is False, "no fault switched anything"


def test_a_tasmota_plug_is_not_taken_for_a_shelly(simulator):
    with pytest.raises(DeviceProtocolError, match="not a Shelly"):
        ShellyRpcDriver(address=simulator.url, timeout=(0.5, 0.5)).get_power()


@pytest.fixture
def shelly_sockets(db, shelly) -> list[Socket]:
    return [socket_create(name=f"bench-{n}", driver="shelly_rpc", address=shelly.url, channel=n, password=PASSWORD) for n in (1, 2, 3, 4)]


@pytest.mark.django_db
def test_the_service_runs_holders_on_a_shelly_with_its_own_failsafe(api, shelly, shelly_sockets):
    started = api.post("/api/instance", {"socket": "bench-2", "emergencyStopTimeout": 30000}).json()
    assert started["triggeredPowerOn"] and shelly.device.is_on(1) and not shelly.device.is_on(0)
    assert 30 < shelly.device.timer_remaining(1) <= 36, "Switch.Set on:true with toggle_after: the deadline + the margin"
    socket = api.get("/api/sockets/bench-2").json()
    assert socket["channel"] == 2 and socket["failsafe"]["armed"] and socket["observedPower"] == "ON"
    assert socket["capabilities"] == {"failsafeTimer": True, "push": False, "perChannelEnergy": True, "deviceInfo": True}

    renewed = api.put(f"/api/instance/{started['instance']['id']}/renew", {"emergencyStopTimeout": 120000})
    assert renewed.status_code == 200 and 120 < shelly.device.timer_remaining(1) <= 126, "a renewal moves the device's timer"
    stopped = api.put(f"/api/instance/{started['instance']['id']}").json()
    assert stopped["triggeredPowerOff"] and not shelly.device.is_on(1)
    assert EnergySample.objects.filter(socket__name="bench-2").exists()


@pytest.mark.django_db(transaction=True)
def test_channels_of_one_device_are_independent_sockets_even_at_once(api, shelly, shelly_sockets):
    api.post("/api/instance", {"socket": "bench-1"})
    answers = start_at_once(["bench-2", "bench-3"], emergencyStopTimeout=60000)
    assert [shelly.device.is_on(n) for n in range(4)] == [True, True, True, False]
    api.put(f"/api/instance/{answers['bench-2']['instance']['id']}")
    assert [shelly.device.is_on(n) for n in range(4)] == [True, False, True, False], "switching channel 2 leaves 1, 3, 4 as they are"
    assert Socket.objects.get(name="bench-3").observed_power == PowerState.ON and Instance.objects.filter(stopped_at=None).count() == 2


@pytest.mark.django_db
def test_a_press_on_the_device_ends_the_holder_as_manual(api, shelly, shelly_sockets):
    instance_id = api.post("/api/instance", {"socket": "bench-3"}).json()["instance"]["id"]
    shelly.device.press_button(2)
    Socket.objects.filter(name="bench-3").update(next_sample_at=None)
    monitor_socket(Socket.objects.get(name="bench-3").pk)
    instance = Instance.objects.get(pk=instance_id)
    assert instance.stop_reason == StopReason.MANUAL and not shelly.device.is_on(2)


def follow(name: str) -> str:
    """Monitoring's next look at socket `name`, at once."""
    Socket.objects.filter(name=name).update(next_sample_at=None)
    return monitor_socket(Socket.objects.get(name=name).pk)


@pytest.mark.django_db
def test_a_press_when_the_failsafe_is_due_is_told_from_the_timer_by_the_devices_source(api, shelly, shelly_sockets, settings):
    """Tasmota cannot tell them apart (an OFF while the armed timer is due counts as the timer); a Shelly says `source`."""
    settings.SMARTSOCKET_FAILSAFE_MARGIN = 0.3
    instance_id = api.post("/api/instance", {"socket": "bench-1", "emergencyStopTimeout": 1000}).json()["instance"]["id"]  # no worker: not enforced
    expires = Socket.objects.get(name="bench-1").failsafe_expires_at
    assert 1.0 < shelly.device.timer_remaining(0) <= 2.0
    time.sleep(1.2)  # the timer is due within the tolerance: by time alone this OFF would be the failsafe
    shelly.device.press_button(0)
    assert follow("bench-1") == "manual_off"
    assert Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL
    assert Socket.objects.get(name="bench-1").last_error == "" and timezone.now() < expires, "the timer had not run out"


@pytest.mark.django_db
def test_the_devices_own_timer_is_failsafe_even_before_the_services_deadline(api, shelly, shelly_sockets):
    instance_id = api.post("/api/instance", {"socket": "bench-2", "emergencyStopTimeout": 60000}).json()["instance"]["id"]
    driver(shelly, channel=2).set_power(True, off_after=0.5)  # another client's flip-back timer, far before the service's
    time.sleep(1.3)
    assert not shelly.device.is_on(1) and shelly.device.switches[1].source == "timer"
    assert follow("bench-2") == "failsafe"
    assert Instance.objects.get(pk=instance_id).stop_reason == StopReason.FAILSAFE
    assert "before the timer the service set" in Socket.objects.get(name="bench-2").last_error


@pytest.mark.django_db
def test_a_wrong_password_fails_the_start_and_nothing_is_created(api, shelly, fast_device_timeouts):
    socket_create(name="locked", driver="shelly_rpc", address=shelly.url, password="wrong")
    answer = api.post("/api/instance", {"socket": "locked"})
    assert answer.status_code == 500 and answer.json()["code"] == "socket_device_error" and "credentials refused" in answer.json()["message"]
    assert not Instance.objects.exists() and not shelly.device.is_on(0)


@pytest.mark.django_db
def test_the_admin_tests_the_connection_and_names_the_fault(admin_client, shelly, shelly_sockets, fast_device_timeouts):
    bad = socket_create(name="wrong-password", driver="shelly_rpc", address=shelly.url, channel=1, password="nope")
    response = admin_client.post("/admin/sockets/socket/", {"action": "test_connection", "_selected_action": [shelly_sockets[1].pk, bad.pk]},
                                 follow=True)
    page = response.content.decode()
    assert f"{shelly.device.device_id}" in page and "relay 2 is OFF" in page
    assert "rong-password: auth:" in page and "credentials refused" in page
    page = admin_client.get(f"/admin/sockets/socket/{shelly_sockets[1].pk}/change/").content.decode()
    assert "on-device failsafe timer, per-channel energy, device info; not: push of changes" in page


@pytest.mark.django_db
def test_the_admin_refuses_a_second_socket_on_the_same_relay(admin_client, shelly, shelly_sockets):
    response = admin_client.post("/admin/sockets/socket/add/", {
        "name": "again", "driver": "shelly_rpc", "address": shelly.url, "channel": 2, "password": "", "_save": "Save"})
    assert response.status_code == 200 and "already drives relay 2" in response.content.decode()
    assert not Socket.objects.filter(name="again").exists()


def test_re_arming_never_leaves_on_a_switch_that_went_off_meanwhile(shelly):
    plug = driver(shelly)
    plug.set_power(True)
    read_status = shelly.device._get_status

    def status_then_a_hand_switches_it_off(params):  # between the driver's read and its Switch.Set
        answer = read_status(params)
        shelly.device.switches[0].set(False, "button")
        return answer

    shelly.device._get_status = status_then_a_hand_switches_it_off
    assert plug.arm_off_timer(30) == 0.0 and not shelly.device.is_on(0), "the hand's OFF stands"


@pytest.mark.django_db
def test_a_shelly_that_would_come_back_on_after_a_power_loss_is_flagged_and_set_to_stay_off(admin_client, api, shelly, shelly_sockets):
    """DESIGN §6.5 on a Shelly: the switch's `initial_state`, read by monitoring, set to `off` by the admin action."""
    shelly.device.switches[2].initial_state, shelly.device.switches[0].initial_state = "restore_last", "on"
    follow("bench-3")
    assert api.get("/api/sockets/bench-3").json()["afterPowerLoss"] == "last"
    response = admin_client.post("/admin/sockets/socket/", {"action": "set_off_after_power_loss", "_selected_action": [shelly_sockets[2].pk]},
                                 follow=True)
    assert response.status_code == 200 and "comes back OFF" in response.content.decode()
    assert shelly.device.switches[2].initial_state == "off" and Socket.objects.get(name="bench-3").after_power_loss == "off"
    assert shelly.device.switches[0].initial_state == "on", "another switch of the device is left as it is"


def push(name: str, went_off: bool) -> str | None:
    """A Shelly webhook call for socket `name` as the push endpoint hands it on (the hooks themselves: test_shelly_push)."""
    return socket_follow_push(socket_id=Socket.objects.get(name=name).pk, on=None, at=timezone.now(), went_off=went_off)


@pytest.mark.django_db
def test_a_switch_off_call_that_finds_the_switch_on_again_by_hand_is_a_blip(api, shelly, shelly_sockets):
    instance_id = api.post("/api/instance", {"socket": "bench-4"}).json()["instance"]["id"]
    shelly.device.press_button(3)
    shelly.device.press_button(3)  # OFF and back ON before the switch.off call is handled
    assert push("bench-4", went_off=False) is None and Instance.objects.get(pk=instance_id).is_running, "ON, as the database has it"
    assert push("bench-4", went_off=True) == "manual_off"
    assert Instance.objects.get(pk=instance_id).stop_reason == StopReason.MANUAL and not shelly.device.is_on(3)
    assert [event.kind for event in Event.objects.filter(socket__name="bench-4", kind__startswith="power.").order_by("seq")] == [
        EventKind.POWER_ON, EventKind.MANUAL_OFF, EventKind.MANUAL_ON, EventKind.POWER_OFF]


@pytest.mark.django_db
def test_a_late_switch_off_call_of_the_services_own_off_records_nothing(api, shelly, shelly_sockets):
    first = api.post("/api/instance", {"socket": "bench-4"}).json()["instance"]["id"]
    api.put(f"/api/instance/{first}")
    second = api.post("/api/instance", {"socket": "bench-4"}).json()["instance"]["id"]
    assert push("bench-4", went_off=True) is None, "switched ON last by a command: the service's own"
    assert Instance.objects.get(pk=second).is_running and shelly.device.is_on(3)
    assert not Event.objects.filter(kind__in=[EventKind.MANUAL_OFF, EventKind.MANUAL_ON]).exists()


@pytest.mark.django_db
def test_in_a_blip_the_unseen_off_is_judged_by_time_not_by_who_switched_it_on(api, shelly, shelly_sockets, settings):
    """The device's `source` names who made the ON; its timer may have made the OFF (the service missed the deadline)."""
    settings.SMARTSOCKET_FAILSAFE_MARGIN = 0.3
    instance_id = api.post("/api/instance", {"socket": "bench-4", "emergencyStopTimeout": 300}).json()["instance"]["id"]  # no worker
    eventually(lambda: not shelly.device.is_on(3), 3, "the Shelly's toggle_after switched it off")
    shelly.device.press_button(3)  # a hand ON before the switch.off call is handled
    assert push("bench-4", went_off=True) == "failsafe"
    assert Instance.objects.get(pk=instance_id).stop_reason == StopReason.FAILSAFE
    assert "missed the deadline" in Socket.objects.get(name="bench-4").last_error and not shelly.device.is_on(3)


def test_a_command_is_told_from_a_hand_under_either_name_of_the_http_source(shelly):
    plug = driver(shelly)
    plug.set_power(True)
    assert plug.read_switch() == (True, "command")
    shelly.device.switches[0].source = "http"  # older firmware's word for an RPC over HTTP
    assert plug.read_switch() == (True, "command")
    shelly.device.press_button(0)
    assert plug.read_switch() == (False, "button")
