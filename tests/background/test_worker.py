"""A real web (gunicorn), Celery worker and beat on the test database, with the simulated plug:
what a user sees of the background work. Embedded broker always; Redis when REDIS_URL names a server."""
import time
from datetime import timedelta

import pytest
import requests

from instances.models import Callback, Instance, StopReason
from sockets.models import EnergySample, PowerPeriod, PowerState, Socket

from tests.processes import eventually

from .stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["embedded", "redis"])
def stack(request, socket, simulator):
    yield from Stack(broker=request.param, plug_url=simulator.url).run()


def start(stack: Stack, **args) -> dict:
    response = requests.post(f"{stack.api}/instance", data=args, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["instance"]


def instance_json(stack: Stack, instance_id: str) -> dict:
    return requests.get(f"{stack.api}/instance/{instance_id}", timeout=10).json()["instance"]


def off_at(plug) -> float | None:
    """When the relay last went OFF (time.time()), if it is OFF now."""
    offs = [at for at, on, _source in plug.transitions if not on]
    return offs[-1] if offs and not plug.is_on else None


def test_samples_appear_on_schedule(stack, socket, plug):
    instance = start(stack)
    time.sleep(3.2)
    samples = list(EnergySample.objects.filter(socket=socket, is_on=True).order_by("taken_at"))
    gaps = [(b.taken_at - a.taken_at).total_seconds() for a, b in zip(samples, samples[1:])]
    assert len(samples) >= 5, f"{len(samples)} samples in 3.2 s while ON every 0.5 s"
    # Each sample is due one interval after the last was due, so a late one is caught up on.
    assert all(0.1 <= gap <= 1.0 for gap in gaps[1:]) and 0.4 <= sum(gaps[1:]) / len(gaps[1:]) <= 0.7, gaps
    assert all(sample.power_w > 0 and sample.current_a > 0 for sample in samples)
    assert len(instance_json(stack, instance["id"])["amperagePerSecond"]) >= 5

    requests.put(f"{stack.api}/instance/{instance['id']}", timeout=10).raise_for_status()
    time.sleep(3.5)
    # From 0.3 s after the stop: a poll under way may have read the relay just before it switched.
    off_samples = EnergySample.objects.filter(socket=socket, taken_at__gt=Instance.objects.get().stopped_at + timedelta(seconds=0.3))
    assert 1 <= off_samples.count() <= 3, "while OFF the socket is sampled every 1.5 s"
    assert not off_samples.filter(is_on=True).exists()
    socket.refresh_from_db()
    assert socket.is_online and socket.last_seen_at is not None


def test_deadline_stops_instance_and_powers_off_within_one_second(stack, socket, plug):
    instance = start(stack, emergencyStopTimeout=1500)
    deadline = Instance.objects.get(pk=instance["id"]).deadline_at.timestamp()
    switched_off = eventually(lambda: off_at(plug), 5, "the plug powered off after the deadline")
    assert 0 <= switched_off - deadline <= 1.0, f"powered off {switched_off - deadline:.3f} s after the deadline"
    eventually(lambda: not Instance.objects.get(pk=instance["id"]).is_running, 2, "the stop committed")  # after the relay switched
    stopped = instance_json(stack, instance["id"])
    assert stopped["stopReason"] == "timeout" and not stopped["isRunning"] and stopped["triggeredPowerOff"]
    period = PowerPeriod.objects.get(socket=socket)
    assert (period.power_on_by, period.power_off_by, period.power_off_cause) == (instance["id"], "<timeout>", "timeout")


def test_callback_reaches_receiver_after_its_duration(stack, socket, plug, receiver):
    sent = time.time()
    response = requests.get(f"{stack.api}/wait", params={"duration": 1}, headers={"CPEE-CALLBACK": receiver.url("/wait")}, timeout=10)
    assert response.json() == {"waiting": True} and response.headers["CPEE-CALLBACK"] == "true"
    response = requests.post(f"{stack.api}/start-wait-stop", data={"duration": 1.5}, headers={"CPEE-CALLBACK": receiver.url("/sws")}, timeout=10)
    instance_id = response.json()["instance"]["id"]
    assert plug.is_on

    calls = {path: (at, body) for at, path, body in receiver.wait_for_calls(2, timeout=6)}
    at, body = calls["/wait"]
    assert body == {"waiting": False} and 1.0 <= at - sent <= 2.5
    at, body = calls["/sws"]
    assert 1.5 <= at - sent <= 3.0
    assert body["instance"]["id"] == instance_id and not body["instance"]["isRunning"] and body["instance"]["stopReason"] == "requested"
    assert instance_id in body["message"]
    assert not plug.is_on
    eventually(lambda: not Callback.objects.filter(delivered_at=None).exists(), 2, "both callbacks recorded as delivered")


def test_button_press_marks_running_instances_manually_stopped(stack, socket, plug):
    ids = [start(stack)["id"], start(stack)["id"]]
    time.sleep(0.5)
    pressed = time.time()
    plug.press_button()
    eventually(lambda: not Instance.objects.filter(stopped_at=None).exists(), 5, "the instances ended after the button press")
    for instance_id in ids:
        instance = instance_json(stack, instance_id)
        assert instance["isManuallyStopped"] and instance["stopReason"] == "manual" and not instance["isEmergencyStopped"]
    period = PowerPeriod.objects.get(socket=socket)
    assert (period.power_off_by, period.power_off_cause) == ("<manual>", "manual")
    assert period.power_off_at.timestamp() >= pressed
    assert not plug.is_on and plug.power_on_commands == 1, "the service accepted the hand-made OFF"


def test_deadline_and_callback_due_while_worker_was_down_are_honoured_on_restart(stack, socket, plug, receiver):
    stack.kill_background()
    instance = start(stack, emergencyStopTimeout=300)
    requests.get(f"{stack.api}/wait", params={"duration": 0.3}, headers={"CPEE-CALLBACK": receiver.url()}, timeout=10)
    time.sleep(1.5)
    assert Instance.objects.get(pk=instance["id"]).is_running and plug.is_on and not receiver.calls

    restarted = time.time()
    stack.start_background()
    switched_off = eventually(lambda: off_at(plug), 5, "the overdue deadline was enforced after the restart")
    assert switched_off >= restarted
    eventually(lambda: Instance.objects.get(pk=instance["id"]).stop_reason == StopReason.TIMEOUT, 2, "stopped by its deadline")
    (at, _path, body), = receiver.wait_for_calls(1, timeout=5)
    assert body == {"waiting": False} and at >= restarted


def test_device_outage_during_a_stop_ends_with_the_plug_off_once_it_is_back(stack, socket, plug):
    instance = start(stack, emergencyStopTimeout=1000)
    plug.set_fault("refuse")
    eventually(lambda: Instance.objects.get(pk=instance["id"]).stop_reason == StopReason.TIMEOUT, 5, "the deadline stopped the instance")
    time.sleep(1.0)
    socket.refresh_from_db()
    assert plug.is_on, "the device was unreachable: nothing could switch it"
    assert (socket.desired_power, socket.desired_by, socket.is_online) == (PowerState.OFF, "<timeout>", False)

    back = time.time()
    plug.clear_fault()
    switched_off = eventually(lambda: off_at(plug), 6, "reconcile powered the plug off once the device was back")
    assert switched_off >= back
    period = eventually(lambda: PowerPeriod.objects.filter(socket=socket).exclude(power_off_at=None).first(), 2, "the period closed")
    assert (period.power_off_by, period.power_off_cause) == ("<timeout>", "timeout")
    eventually(lambda: Socket.objects.filter(pk=socket.pk, observed_power=PowerState.OFF, is_online=True).exists(), 3, "the socket is seen OFF and online")
