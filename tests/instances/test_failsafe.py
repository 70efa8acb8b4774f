"""DESIGN §6.4–6.5, in-process against the simulated plug: the plug's own off-timer (Tasmota PulseTime)
is armed, re-armed and cleared with the holders' deadlines; a timer that fires first is recorded as
`<failsafe>`; what the plug does after a mains outage is read and can be set to OFF."""
import random
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from instances.models import Instance, StopReason
from instances.tasks import monitor_socket
from sockets.drivers import TasmotaHttpDriver
from sockets.drivers.tasmota_http import pulse_time_seconds, pulse_time_value
from sockets.models import PowerPeriod, PowerState, Socket
from sockets.services import socket_set_off_after_power_loss
from sockets.tasks import reconcile_socket

pytestmark = pytest.mark.django_db


def start(api, **args) -> dict:
    response = api.post("/api/instance", args)
    assert response.status_code == 200, response.content
    return response.json()["instance"]


def make_due(socket: Socket) -> None:
    Socket.objects.filter(pk=socket.pk).update(next_sample_at=timezone.now() - timedelta(milliseconds=1))


def timer_end(plug) -> float:
    """When the plug will switch itself off (time.time()), or 0 when it is not counting."""
    remaining = plug.pulse_remaining_s
    return time.time() + remaining if remaining else 0.0


def latest_deadline(socket: Socket) -> float:
    return max(i.deadline_at for i in Instance.objects.filter(socket=socket, stopped_at=None)).timestamp()


def test_pulse_time_encoding_never_ends_early_and_respects_the_range():
    assert [pulse_time_value(s) for s in (0.05, 0.1, 1.01, 11.1, 11.2, 13, 3600, 10**6)] == [1, 1, 11, 111, 112, 113, 3700, 64900]
    assert all(pulse_time_seconds(pulse_time_value(s)) >= s for s in (0.1, 0.55, 9.99, 11.15, 59.5, 64800))


def test_a_start_arms_the_timer_before_switching_on(api, socket, plug):
    instance = start(api, emergencyStopTimeout=4000)
    assert plug.commands[-2:] == ["PulseTime 90", "Power On"], "4 s + the 5 s margin, set before the relay goes ON"
    deadline = Instance.objects.get(pk=instance["id"]).deadline_at.timestamp()
    assert deadline + 5 - 0.2 <= timer_end(plug) <= deadline + 5.2
    failsafe = api.get("/api/sockets/default").json()["failsafe"]
    assert failsafe["supported"] and failsafe["armed"] and failsafe["expiresAt"]


def test_a_later_holder_moves_the_timer_out_and_an_earlier_one_leaves_it(api, socket, plug):
    start(api, emergencyStopTimeout=4000)
    start(api, emergencyStopTimeout=20000)
    assert plug.commands[-1] == "PulseTime 125" and timer_end(plug) >= latest_deadline(socket) + 4.8
    commands = len(plug.commands)
    start(api, emergencyStopTimeout=8000)
    assert not any(c.startswith("PulseTime") for c in plug.commands[commands:]), "never shortened below a holder"


def test_a_holder_without_a_deadline_clears_the_timer(api, socket, plug):
    start(api, emergencyStopTimeout=4000)
    start(api)
    assert plug.commands[-1] == "PulseTime 0" and plug.pulse_remaining_s == 0
    assert Socket.objects.get(pk=socket.pk).failsafe_expires_at is None
    start(api, emergencyStopTimeout=4000)
    assert plug.pulse_remaining_s == 0, "a holder without deadline must never be cut short"


def test_a_first_holder_without_a_deadline_clears_a_timer_left_on_the_device(api, socket, plug):
    plug.execute("PulseTime 5")  # left from an earlier run: 0.5 s
    start(api)
    assert plug.commands[-2:] == ["PulseTime 0", "Power On"]
    time.sleep(0.7)
    assert plug.is_on


def test_renewal_moves_the_timer_with_the_deadline(api, socket, plug):
    instance = start(api, emergencyStopTimeout=4000)
    assert api.put(f"/api/instance/{instance['id']}/renew", {"emergencyStopTimeout": 30000}).status_code == 200
    assert timer_end(plug) >= latest_deadline(socket) + 4.8


def test_the_last_stop_clears_the_timer(api, socket, plug):
    instance = start(api, emergencyStopTimeout=4000)
    api.put(f"/api/instance/{instance['id']}")
    assert not plug.is_on and plug.pulse_remaining_s == 0
    socket.refresh_from_db()
    assert socket.failsafe_expires_at is None and socket.failsafe_target_at is None


def test_monitoring_re_arms_and_shrinks_the_timer_to_the_holders(api, socket, plug):
    short, long = start(api, emergencyStopTimeout=4000), start(api, emergencyStopTimeout=60000)
    api.put(f"/api/instance/{long['id']}")
    assert timer_end(plug) > latest_deadline(socket) + 50, "a stop leaves it long (never short)"
    plug.execute("PulseTime 0")  # as after a device reboot without the setting
    make_due(socket)
    monitor_socket(socket.pk)
    assert latest_deadline(socket) + 4.8 <= timer_end(plug) <= latest_deadline(socket) + 5.3, short


def test_deadlines_beyond_the_device_range_are_re_armed_in_time(api, socket, plug, monkeypatch):
    monkeypatch.setattr(TasmotaHttpDriver, "failsafe_max_seconds", 3.0)
    start(api, emergencyStopTimeout=60000)
    assert plug.commands[-2:] == ["PulseTime 30", "Power On"], "the longest the device can count"
    for _ in range(8):  # monitoring passes over 4.8 s, longer than the device can count
        time.sleep(0.6)
        make_due(socket)
        monitor_socket(socket.pk)
    assert plug.is_on and plug.pulse_remaining_s > 1.0, "re-armed before the device's timer ran out"
    assert [c for c in plug.commands if c.startswith("PulseTime ")].count("PulseTime 30") >= 2
    assert plug.commands.count("PulseTime1") == 8, "each pass reads the timer; it is only set when needed"


@pytest.mark.parametrize("where", ["setting", "socket"])
def test_the_failsafe_can_be_turned_off(api, socket, plug, settings, where):
    if where == "setting":
        settings.SMARTSOCKET_FAILSAFE = False
    else:
        Socket.objects.filter(pk=socket.pk).update(failsafe=False)
    plug.execute("PulseTime 300")  # a timer left on the plug (200 s)
    start(api, emergencyStopTimeout=4000)
    assert [c for c in plug.commands if c.startswith("PulseTime ")] == ["PulseTime 0"], "the leftover cleared, nothing armed"
    assert plug.pulse_remaining_s == 0
    assert api.get("/api/sockets/default").json()["failsafe"] == {"supported": False, "armed": False, "expiresAt": None}


def test_a_timer_that_fires_before_the_service_is_recorded_as_failsafe(api, socket, plug, settings):
    settings.SMARTSOCKET_FAILSAFE_MARGIN = 0.3
    instance = start(api, emergencyStopTimeout=300)  # no worker runs: nobody enforces the deadline
    time.sleep(0.9)
    assert not plug.is_on and plug.transitions[-1][2] == "pulsetime", "the plug switched itself off"
    make_due(socket)
    assert monitor_socket(socket.pk) == "failsafe"
    stopped = Instance.objects.get(pk=instance["id"])
    assert stopped.stop_reason == StopReason.FAILSAFE and not stopped.is_running
    period = PowerPeriod.objects.get()
    assert (period.power_off_by, period.power_off_cause) == ("<failsafe>", "failsafe")
    socket.refresh_from_db()
    assert "missed the deadline" in socket.last_error and socket.desired_power == PowerState.OFF
    assert reconcile_socket(socket.pk) == "none" and not plug.is_on, "not switched back ON"


def test_a_hand_switching_off_before_the_timer_is_still_manual(api, socket, plug):
    start(api, emergencyStopTimeout=60000)
    plug.press_button()
    make_due(socket)
    assert monitor_socket(socket.pk) == "manual_off"


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_renewals_and_stops_never_leave_the_timer_short(api, socket, plug):
    def client(seed: int) -> None:
        rng = random.Random(seed)
        from rest_framework.test import APIClient

        local, mine = APIClient(), []
        try:
            for _ in range(12):
                action = rng.choice(["start", "start", "renew", "stop"])
                if action == "start" or not mine:
                    args = {"emergencyStopTimeout": rng.randint(20, 60) * 1000} if rng.random() < 0.8 else {}
                    mine.append(local.post("/api/instance", args).json()["instance"]["id"])
                elif action == "renew":
                    local.put(f"/api/instance/{rng.choice(mine)}/renew", {"emergencyStopTimeout": rng.randint(20, 60) * 1000})
                else:
                    local.put(f"/api/instance/{mine.pop(rng.randrange(len(mine)))}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    running = list(Instance.objects.filter(stopped_at=None))
    assert running and plug.is_on
    if any(i.deadline_at is None for i in running):
        assert plug.pulse_remaining_s == 0
    else:
        assert timer_end(plug) >= latest_deadline(socket) + 4.8
    assert not any(source == "pulsetime" for _at, _on, source in plug.transitions), "never switched off under a holder"
    for instance in running:
        api.put(f"/api/instance/{instance.pk}")
    assert not plug.is_on and plug.pulse_remaining_s == 0


@pytest.mark.parametrize(("value", "flag"), [(0, "off"), (1, "on"), (2, "on"), (3, "last"), (4, "on"), (5, "on")])
def test_what_the_plug_does_after_a_power_loss_is_flagged(api, socket, plug, value, flag):
    plug.power_on_state = value
    monitor_socket(socket.pk)
    assert api.get("/api/sockets/default").json()["afterPowerLoss"] == flag


def test_the_plug_can_be_set_to_stay_off_after_a_power_loss(admin_client, socket, plug):
    monitor_socket(socket.pk)
    assert Socket.objects.get(pk=socket.pk).after_power_loss == "last"
    response = admin_client.post("/admin/sockets/socket/", {"action": "set_off_after_power_loss", "_selected_action": [socket.pk]}, follow=True)
    assert response.status_code == 200 and "comes back OFF" in response.content.decode()
    assert plug.power_on_state == 0 and Socket.objects.get(pk=socket.pk).after_power_loss == "off"
    plug.execute("Power On")
    assert plug.mains_cycle() is False, "the simulated plug now stays OFF after the mains come back"
    assert socket_set_off_after_power_loss(socket_id=socket.pk).after_power_loss == "off"


def test_max_on_ends_holders_without_a_deadline_and_the_timer_backs_it(api, socket, plug):
    from instances.tasks import enforce_deadline

    Socket.objects.filter(pk=socket.pk).update(max_on_seconds=1.0)
    with_ceiling = start(api)
    assert with_ceiling["deadline"] and with_ceiling["emergencyStopTimeout"] is None
    assert timer_end(plug) >= Instance.objects.get(pk=with_ceiling["id"]).deadline_at.timestamp() + 4.8, "the device backs it"
    time.sleep(1.1)
    assert enforce_deadline(with_ceiling["id"]) is True
    ended = Instance.objects.get(pk=with_ceiling["id"])
    assert ended.stop_reason == StopReason.MAX_ON and not plug.is_on
    assert (PowerPeriod.objects.get().power_off_by, PowerPeriod.objects.get().power_off_cause) == ("<max_on>", "max_on")
    assert start(api, emergencyStopTimeout=60000)["deadline"], "holders with a deadline keep theirs"
    assert api.get("/api/sockets/default").json()["maxOnSeconds"] == 1.0


def test_a_renewal_while_the_relay_state_is_unknown_still_moves_the_timer(api, socket, plug):
    instance = start(api, emergencyStopTimeout=3000)
    Socket.objects.filter(pk=socket.pk).update(observed_power=PowerState.UNKNOWN)  # as after one failed poll
    assert api.put(f"/api/instance/{instance['id']}/renew", {"emergencyStopTimeout": 60000}).status_code == 200
    assert timer_end(plug) >= latest_deadline(socket) + 4.8


def test_a_renewal_the_plug_refuses_to_time_is_not_committed(api, socket, plug, fast_device_timeouts):
    instance = start(api, emergencyStopTimeout=3000)
    deadline = Instance.objects.get(pk=instance["id"]).deadline_at
    plug.set_fault("http500", only="PulseTime")
    response = api.put(f"/api/instance/{instance['id']}/renew", {"emergencyStopTimeout": 60000})
    assert response.status_code == 500 and Instance.objects.get(pk=instance["id"]).deadline_at == deadline


@pytest.mark.parametrize("seen_off", [True, False], ids=["relay-seen-off-before", "relay-never-seen"])
def test_a_timer_left_on_the_plug_never_runs_under_a_holder_without_a_deadline(api, socket, plug, seen_off):
    if seen_off:
        monitor_socket(socket.pk)
    plug.execute("PulseTime 130")  # 30 s, saved on the plug from an earlier run
    plug.press_button()  # a hand switches it on: the countdown starts
    assert start(api)["triggeredPowerOn"] is seen_off, "taken for the start's own ON, or kept as found"
    assert plug.is_on and plug.pulse_remaining_s == 0, "cleared for a holder without a deadline"


def test_a_stop_that_leaves_only_holders_with_deadlines_arms_their_timer(api, socket, plug):
    without = start(api)
    start(api, emergencyStopTimeout=20000)
    assert plug.pulse_remaining_s == 0
    api.put(f"/api/instance/{without['id']}")
    assert plug.is_on and timer_end(plug) >= latest_deadline(socket) + 4.8


def test_turning_the_failsafe_off_clears_the_timer_at_once(admin_client, api, socket, plug):
    from sockets.services import socket_update

    start(api, emergencyStopTimeout=20000)
    assert plug.pulse_remaining_s > 20
    socket_update(socket_id=socket.pk, failsafe=False)
    assert plug.pulse_remaining_s == 0 and plug.is_on


def test_monitoring_corrects_a_timer_lost_by_a_reboot_without_rewriting_a_right_one(api, socket, plug):
    start(api, emergencyStopTimeout=20000)
    make_due(socket)
    before = len(plug.commands)
    monitor_socket(socket.pk)
    sent = plug.commands[before:]
    assert "PulseTime1" in sent and not any(command.startswith("PulseTime ") for command in sent), "right: read, not rewritten"
    plug.execute("PulseTime 0")  # as after a reboot without the setting
    make_due(socket)
    monitor_socket(socket.pk)
    assert plug.commands[-1].startswith("PulseTime 1") and timer_end(plug) >= latest_deadline(socket) + 4.8
