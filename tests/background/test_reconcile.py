"""Reconcile, in-process: the device is driven to the state the database says, with backoff while it fails."""
from datetime import timedelta

import pytest
from django.utils import timezone

from instances.models import Instance
from instances.tasks import enforce_deadline
from sockets.models import PowerPeriod, PowerState, Socket
from sockets.tasks import reconcile_socket, reconcile_sockets

pytestmark = pytest.mark.django_db


def test_an_emergency_stop_during_an_outage_ends_off_once_the_device_is_back(socket, plug, api, fast_device_timeouts):
    instance_id = api.post("/api/instance").json()["instance"]["id"]
    plug.set_fault("refuse")
    assert api.post("/api/emergency-stop").status_code == 500
    assert api.get(f"/api/instance/{instance_id}").json()["instance"]["isEmergencyStopped"], "the decision was committed"
    assert reconcile_sockets() == 1

    assert reconcile_socket(socket.pk) == "failed"
    socket.refresh_from_db()
    assert socket.reconcile_attempts == 1 and not socket.is_online and socket.last_error
    assert timedelta(seconds=0.5) < socket.reconcile_next_at - timezone.now() <= timedelta(seconds=1)
    assert reconcile_socket(socket.pk) == "not_due" and reconcile_sockets() == 0, "backing off"
    Socket.objects.filter(pk=socket.pk).update(reconcile_next_at=timezone.now())
    assert reconcile_socket(socket.pk) == "failed"
    socket.refresh_from_db()
    assert socket.reconcile_attempts == 2 and timedelta(seconds=1.5) < socket.reconcile_next_at - timezone.now() <= timedelta(seconds=2)

    plug.clear_fault()
    Socket.objects.filter(pk=socket.pk).update(reconcile_next_at=timezone.now())
    assert reconcile_socket(socket.pk) == "switched"
    assert not plug.is_on
    period = PowerPeriod.objects.get()
    assert (period.power_off_by, period.power_off_cause) == ("<emergency>", "emergency")
    socket.refresh_from_db()
    assert (socket.observed_power, socket.is_online, socket.reconcile_attempts, socket.reconcile_next_at) == (PowerState.OFF, True, 0, None)
    assert reconcile_sockets() == 0 and reconcile_socket(socket.pk) == "none"


def test_a_device_already_in_place_is_confirmed_without_a_command(socket, plug, api):
    instance_id = api.post("/api/instance").json()["instance"]["id"]
    plug.set_fault("wrong_state", count=1)
    assert api.put(f"/api/instance/{instance_id}").status_code == 409
    assert Socket.objects.get(pk=socket.pk).observed_power == PowerState.UNKNOWN
    commands = len(plug.commands)
    switches = plug.power_on_commands + plug.power_off_commands
    assert reconcile_socket(socket.pk) == "confirmed"
    assert set(plug.commands[commands:]) == {"Power"}, "only read"
    assert plug.power_on_commands + plug.power_off_commands == switches, "not switched"
    assert Socket.objects.get(pk=socket.pk).observed_power == PowerState.ON and PowerPeriod.objects.get().is_open


def test_a_plug_found_on_with_nothing_running_is_switched_off(socket, plug):
    plug.press_button()
    assert reconcile_socket(socket.pk) == "switched"
    assert not plug.is_on and not PowerPeriod.objects.exists()


def test_a_power_period_left_open_is_closed_once_the_plug_is_seen_off(socket, plug, api, fast_device_timeouts):
    instance_id = api.post("/api/instance", {"emergencyStopTimeout": 60000}).json()["instance"]["id"]
    Instance.objects.filter(pk=instance_id).update(deadline_at=timezone.now())
    plug.set_fault("refuse")
    assert enforce_deadline(instance_id) is True  # committed, the plug not reached
    assert Instance.objects.get(pk=instance_id).stop_reason == "timeout"
    plug.clear_fault()
    plug.press_button()  # whatever switched it: the plug is OFF now, as the database wants
    Socket.objects.filter(pk=socket.pk).update(observed_power=PowerState.OFF)
    assert reconcile_sockets() == 1, "an open period on a socket that must be OFF is unsettled"
    assert reconcile_socket(socket.pk) == "confirmed"
    period = PowerPeriod.objects.get()
    assert (period.power_off_by, period.power_off_cause) == ("<timeout>", "timeout")
    assert reconcile_sockets() == 0
