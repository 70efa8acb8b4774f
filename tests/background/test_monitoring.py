"""Monitoring task logic, in-process against the simulated plug: samples, online state, manual changes."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from instances.models import Instance, StopReason
from instances.tasks import monitor_socket, monitor_sockets
from sockets.models import EnergySample, PowerPeriod, PowerState, Socket
from sockets.services import socket_next_sample_at


def start(api, **args) -> str:
    response = api.post("/api/instance", args)
    assert response.status_code == 200, response.content
    return response.json()["instance"]["id"]


def make_due(socket: Socket) -> None:
    Socket.objects.filter(pk=socket.pk).update(next_sample_at=timezone.now() - timedelta(milliseconds=1))


@pytest.mark.django_db
def test_it_samples_a_due_socket_once_per_interval(socket, plug):
    monitor_socket(socket.pk)
    socket.refresh_from_db()
    sample = EnergySample.objects.get(socket=socket)
    assert sample.is_on is False and sample.voltage_v > 0
    assert socket.is_online and socket.observed_power == PowerState.OFF and socket.last_seen_at is not None
    assert socket.next_sample_at == socket_next_sample_at(socket_id=socket.pk, after=sample.taken_at, interval=30), (
        "OFF: the next at the socket's next grid time, SMARTSOCKET_SAMPLE_INTERVAL_OFF (30 s) apart")

    monitor_socket(socket.pk)
    assert EnergySample.objects.count() == 1, "not due again yet"


@pytest.mark.django_db
def test_it_samples_at_the_on_pace_and_honours_a_per_socket_interval(socket, plug, api):
    Socket.objects.filter(pk=socket.pk).update(sample_interval_on=0.75)
    start(api)
    socket.refresh_from_db()
    assert (socket.next_sample_at - timezone.now()).total_seconds() <= 0.75, "powering ON pulls the next sample in"
    make_due(socket)
    monitor_socket(socket.pk)
    socket.refresh_from_db()
    latest = EnergySample.objects.order_by("-taken_at").first()
    assert latest.is_on is True and latest.power_w > 0
    assert socket.next_sample_at == socket_next_sample_at(socket_id=socket.pk, after=latest.taken_at, interval=0.75), "the socket's own ON interval"


@pytest.mark.django_db
def test_the_beat_tick_sends_only_due_and_unclaimed_sockets(socket, plug):
    assert monitor_sockets() == 1
    Socket.objects.filter(pk=socket.pk).update(monitor_claimed_until=timezone.now() + timedelta(seconds=10))
    assert monitor_sockets() == 0
    monitor_socket(socket.pk)
    assert not EnergySample.objects.exists(), "another worker holds the lease"


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_poll_one_socket_at_once(socket, plug):
    plug.latency = 0.3
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        try:
            monitor_socket(socket.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert EnergySample.objects.count() == 1
    assert plug.commands.count("Status 0") == 1, "one poll: relay and meter in one request"
    assert Socket.objects.get(pk=socket.pk).monitor_claimed_until is None


@pytest.mark.django_db
def test_a_dead_plug_is_marked_offline_and_its_state_unknown(socket, plug, fast_device_timeouts):
    monitor_socket(socket.pk)
    plug.set_fault("refuse")
    make_due(socket)
    monitor_socket(socket.pk)
    socket.refresh_from_db()
    assert not socket.is_online and socket.observed_power == PowerState.UNKNOWN and socket.last_error
    assert socket.monitor_claimed_until is None and socket.next_sample_at > timezone.now()
    assert EnergySample.objects.count() == 1


@pytest.mark.django_db
def test_switching_off_by_hand_ends_the_running_instances(socket, plug, api):
    ids = [start(api), start(api)]
    plug.press_button()
    make_due(socket)
    assert monitor_socket(socket.pk) == "manual_off"
    for instance_id in ids:
        instance = api.get(f"/api/instance/{instance_id}").json()["instance"]
        assert instance["isManuallyStopped"] and instance["stopReason"] == "manual" and not instance["isRunning"]
        assert instance["energyConsumedWh"] is not None
    period = PowerPeriod.objects.get()
    assert (period.power_off_by, period.power_off_cause) == ("<manual>", "manual")
    socket.refresh_from_db()
    assert (socket.desired_power, socket.observed_power, socket.desired_by) == (PowerState.OFF, PowerState.OFF, "<manual>")
    assert not plug.is_on and plug.power_on_commands == 1


@pytest.mark.django_db
def test_switching_on_by_hand_with_nothing_running_is_recorded_and_undone(socket, plug, api):
    monitor_socket(socket.pk)
    plug.press_button()
    make_due(socket)
    assert monitor_socket(socket.pk) == "manual_on"
    period = PowerPeriod.objects.get()
    assert (period.power_on_by, period.power_on_cause) == ("<manual>", "manual")
    assert (period.power_off_by, period.power_off_cause) == ("<unheld>", "unheld"), "nobody holds it: OFF again"
    socket.refresh_from_db()
    assert (socket.desired_power, socket.observed_power) == (PowerState.OFF, PowerState.OFF) and not plug.is_on

    instance_id = start(api)
    assert PowerPeriod.objects.count() == 2 and PowerPeriod.objects.filter(power_off_at=None).get().power_on_by == instance_id
    api.put(f"/api/instance/{instance_id}")
    assert not plug.is_on


@pytest.mark.django_db
def test_an_unknown_state_after_a_failed_command_is_not_taken_for_a_manual_change(socket, plug, api):
    instance_id = start(api)
    plug.set_fault("wrong_state", count=1)
    assert api.put(f"/api/instance/{instance_id}").status_code == 409  # the stop failed: still running
    assert Socket.objects.get(pk=socket.pk).observed_power == PowerState.UNKNOWN
    plug.press_button()  # now OFF, while the database says it must be ON
    make_due(socket)
    assert monitor_socket(socket.pk) == "reconcile"
    assert Instance.objects.get(pk=instance_id).is_running
    assert plug.is_on, "reconcile drove it back ON for the running instance"
    assert Socket.objects.get(pk=socket.pk).observed_power == PowerState.ON
    assert not Instance.objects.filter(stop_reason=StopReason.MANUAL).exists()


@pytest.mark.django_db
def test_switching_on_by_hand_during_an_emergency_stop_is_undone(socket, plug, api):
    assert api.post("/api/emergency-stop").status_code == 200
    monitor_socket(socket.pk)
    plug.press_button()
    make_due(socket)
    assert monitor_socket(socket.pk) == "manual_on"
    assert not plug.is_on and not PowerPeriod.objects.filter(power_off_at=None).exists()
    period = PowerPeriod.objects.get()
    assert (period.power_on_by, period.power_off_by, period.power_off_cause) == ("<manual>", "<emergency>", "emergency")
    assert Socket.objects.get(pk=socket.pk).desired_power == PowerState.OFF
