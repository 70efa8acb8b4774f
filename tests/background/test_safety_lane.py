"""DESIGN §6.2–6.3 with real processes: the safety lane keeps deadlines on time under a callback flood,
the must-be-OFF watch undoes a hand's ON within 2 s at default settings, and a start that failed
after its relay command ends with the plug OFF and no <manual> period.

Embedded broker always; Redis (and, under .ci/run, PostgreSQL) when REDIS_URL names a server.
"""
import time

import pytest
import requests
from django.db import DatabaseError
from rest_framework.test import APIClient

from instances.models import Callback, Instance, StopReason
from sockets.models import PowerPeriod, PowerState, Socket
from tests.processes import eventually, free_port

from .stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The settings a user gets (the stack's FAST intervals undone), for the promises made "with the default settings".
DEFAULTS = {
    "SMARTSOCKET_SAMPLE_INTERVAL_ON": "5", "SMARTSOCKET_SAMPLE_INTERVAL_OFF": "30", "SMARTSOCKET_MONITOR_TICK": "1",
    "SMARTSOCKET_RECONCILE_SWEEP": "1", "SMARTSOCKET_RECONCILE_BACKOFF_MAX": "60", "SMARTSOCKET_CALLBACK_SWEEP": "1",
    "SMARTSOCKET_DEVICE_CONNECT_TIMEOUT": "2", "SMARTSOCKET_DEVICE_READ_TIMEOUT": "3",
}


@pytest.fixture(params=["embedded", "redis"])
def broker(request) -> str:
    return request.param


def off_at(plug) -> float | None:
    offs = [at for at, on, _source in plug.transitions if not on]
    return offs[-1] if offs and not plug.is_on else None


def test_a_deadline_is_met_while_callbacks_flood_the_default_lane(broker, socket, simulator, plug, receiver):
    receiver.delay = 2.0  # a receiver that hangs on every attempt
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens: every attempt is refused
    with Stack(broker=broker, plug_url=simulator.url, SMARTSOCKET_CALLBACK_BACKOFF="0.2", **{
        k: v for k, v in DEFAULTS.items() if "CALLBACK" not in k}).running() as stack:
        floods = [{f"C{n}-CALLBACK": f"{closed}/{r}/{n}" for n in range(8)} for r in range(3)]
        floods.append({f"C{n}-CALLBACK": receiver.url(f"/slow/{n}") for n in range(8)})
        for headers in floods:
            assert requests.get(f"{stack.api}/wait", params={"duration": 0}, headers=headers, timeout=10).status_code == 200
        time.sleep(0.5)  # the flood is being delivered and retried
        answer = requests.post(f"{stack.api}/instance", data={"emergencyStopTimeout": 3000}, timeout=10)
        deadline = Instance.objects.get(pk=answer.json()["instance"]["id"]).deadline_at.timestamp()
        switched_off = eventually(lambda: off_at(plug), 6, "the deadline switched the plug OFF")
        lateness = switched_off - deadline
        retried = Callback.objects.filter(attempts__gt=1).count()
        print(f"flood ({broker}): deadline met {lateness:+.3f} s; {retried} callbacks retried meanwhile")
        assert lateness <= 1.0, f"the deadline was {lateness:.2f} s late behind the callback flood"
        assert retried >= 8, "the flood was being retried while the deadline fell due"
        eventually(lambda: Instance.objects.get().stop_reason == StopReason.TIMEOUT, 2, "the stop is committed")


@pytest.mark.parametrize("locked", [True, False], ids=["emergency-locked", "nobody-holds-it"])
def test_a_plug_switched_on_by_hand_while_it_must_be_off_is_off_again_within_two_seconds(broker, locked, socket, simulator, plug):
    with Stack(broker=broker, plug_url=simulator.url, **DEFAULTS).running() as stack:
        instance = requests.post(f"{stack.api}/instance", timeout=10).json()["instance"]
        if locked:
            assert requests.post(f"{stack.api}/emergency-stop", timeout=10).status_code == 200
        else:
            requests.put(f"{stack.api}/instance/{instance['id']}", timeout=10).raise_for_status()
        time.sleep(1.5)  # settled, watched
        detections = []
        for _ in range(3):
            pressed = time.time()
            assert plug.press_button() is True
            switched_off = eventually(lambda: off_at(plug) if (off_at(plug) or 0) > pressed else None, 2.5, "switched OFF again")
            detections.append(switched_off - pressed)
            time.sleep(0.3)
        print(f"manual ON ({broker}, {'locked' if locked else 'unheld'}): OFF again after {', '.join(f'{d:.2f}' for d in detections)} s")
        assert max(detections) <= 2.0
        periods = list(PowerPeriod.objects.filter(power_on_by="<manual>"))
        assert len(periods) == 3 and all(p.power_off_by == ("<emergency>" if locked else "<unheld>") for p in periods)
        assert Socket.objects.get(pk=socket.pk).is_emergency_stopped is locked


def test_a_start_that_fails_after_its_relay_command_ends_off_without_a_manual_period(broker, socket, simulator, plug, monkeypatch):
    with Stack(broker=broker, plug_url=simulator.url).running():
        def broken_save(self, *args, **kwargs):
            raise DatabaseError("injected after the relay command")

        monkeypatch.setattr(Instance, "save", broken_save)
        response = APIClient(raise_request_exception=False).post("/api/instance")  # in this process, with the fault
        failed = time.time()
        assert response.status_code == 500 and plug.is_on
        switched_off = eventually(lambda: off_at(plug), 3, "the background work switched the plug OFF")
        print(f"failed start ({broker}): plug OFF {switched_off - failed:.2f} s after the 500")
        time.sleep(1.0)  # and nobody switches it back on, or records a hand
        assert not plug.is_on and not PowerPeriod.objects.exists() and not Instance.objects.exists()
        socket.refresh_from_db()
        assert (socket.desired_power, socket.observed_power) == (PowerState.OFF, PowerState.OFF)


def test_a_callback_receiver_that_hangs_costs_one_attempt_per_backoff_step(socket, simulator, receiver):
    receiver.delay = 1.5
    with Stack(broker="embedded", plug_url=simulator.url, SMARTSOCKET_CALLBACK_TIMEOUT="0.5",
                      SMARTSOCKET_CALLBACK_BACKOFF="1", SMARTSOCKET_CALLBACK_SWEEP="0.25").running() as stack:
        requests.get(f"{stack.api}/wait", params={"duration": 0}, headers={"CPEE-CALLBACK": receiver.url()}, timeout=10)
        time.sleep(4.0)
        callback = Callback.objects.get()
        # attempts at 0, ~1.5 (0.5 s timeout + 1 s), ~3.5 (+2 s): never one per 0.25 s sweep
        assert 2 <= callback.attempts <= 3, callback.attempts
        assert "Timeout" in callback.last_error



def test_a_planned_stop_is_on_time_while_callback_receivers_hang(broker, socket, simulator, plug, receiver):
    receiver.delay = 3.0  # every callback PUT hangs 3 s: the default lane's 8 threads are busy for ~9 s
    with Stack(broker=broker, plug_url=simulator.url, SMARTSOCKET_CALLBACK_TIMEOUT="4", **DEFAULTS).running() as stack:
        for r in range(3):
            headers = {f"C{n}-CALLBACK": receiver.url(f"/hang/{r}/{n}") for n in range(8)}
            assert requests.get(f"{stack.api}/wait", params={"duration": 0}, headers=headers, timeout=10).status_code == 200
        time.sleep(0.5)
        answer = requests.post(f"{stack.api}/start-wait-stop", data={"duration": 2}, timeout=10).json()["instance"]
        planned = Instance.objects.get(pk=answer["id"]).started_at.timestamp() + 2
        switched_off = eventually(lambda: off_at(plug), 8, "the planned stop switched the plug OFF")
        print(f"planned stop ({broker}) under hanging callbacks: {switched_off - planned:+.3f} s")
        assert switched_off - planned <= 1.0
