"""Deadlines and lease renewal, in-process: the sweep and the per-instance task stop overdue instances."""
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from instances.models import Instance, StopReason
from instances.tasks import enforce_deadline, enforce_deadlines
from sockets.models import PowerPeriod, PowerState, Socket
from sockets.services import socket_create
from sockets.simulator import PlugSimulator, SimulatorServer
from sockets.tasks import reconcile_socket

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


def sweep() -> list[str]:
    """The beat sweep, its fan-out run in-process (eager_tasks): the ids of the instances it stopped for their deadline."""
    before = set(Instance.objects.filter(stop_reason=StopReason.TIMEOUT).values_list("pk", flat=True))
    enforce_deadlines()
    return sorted(set(Instance.objects.filter(stop_reason=StopReason.TIMEOUT).values_list("pk", flat=True)) - before)


def start(api, **args) -> str:
    response = api.post("/api/instance", args)
    assert response.status_code == 200, response.content
    return response.json()["instance"]["id"]


def overdue(instance_id: str) -> None:
    Instance.objects.filter(pk=instance_id).update(deadline_at=timezone.now() - timedelta(milliseconds=1))


def test_the_sweep_stops_overdue_instances_and_powers_off_after_the_last(socket, plug, api):
    late, other, patient = start(api, emergencyStopTimeout=60000), start(api, emergencyStopTimeout=60000), start(api)
    overdue(late)
    assert sweep() == [late]
    assert plug.is_on, "others still hold the plug"
    overdue(other)
    api.put(f"/api/instance/{patient}")
    assert sweep() == [other]
    assert not plug.is_on
    instance = api.get(f"/api/instance/{other}").json()["instance"]
    assert instance["stopReason"] == "timeout" and instance["triggeredPowerOff"] and not instance["isRunning"]
    assert PowerPeriod.objects.get().power_off_by == "<timeout>"
    assert api.get("/api/server/status").json()["latestEmergencyStopTimeoutInstanceId"] == other
    assert sweep() == [], "safe to run again"


def test_the_deadline_task_is_a_no_op_before_the_deadline_and_after_a_stop(socket, plug, api):
    instance_id = start(api, emergencyStopTimeout=60000)
    assert enforce_deadline(instance_id) is False
    assert Instance.objects.get(pk=instance_id).is_running
    overdue(instance_id)
    assert enforce_deadline(instance_id) is True
    assert enforce_deadline(instance_id) is False
    assert enforce_deadline("no-such-instance") is False
    assert plug.power_off_commands == 1


def test_renewing_pushes_the_deadline_out(socket, plug, api):
    instance_id = start(api, emergencyStopTimeout=1000)
    before = Instance.objects.get(pk=instance_id).deadline_at
    response = api.put(f"/api/instance/{instance_id}/renew", {"emergencyStopTimeout": 60000})
    assert response.status_code == 200
    instance = Instance.objects.get(pk=instance_id)
    assert instance.emergency_stop_timeout_ms == 60000 and instance.deadline_at > before + timedelta(seconds=55)
    assert response.json()["instance"]["emergencyStopTimeout"] == 60000
    assert sweep() == [] and instance.is_running


def test_renewing_accepts_cpee_literal_path_and_keeps_the_timeout(socket, plug, api):
    instance_id = start(api, emergencyStopTimeout=5000)
    overdue(instance_id)
    response = api.put("/api/instance/:instanceId/renew", f"instanceId={instance_id}", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    deadline = Instance.objects.get(pk=instance_id).deadline_at
    assert timedelta(seconds=4) < deadline - timezone.now() <= timedelta(seconds=5)
    assert sweep() == []


def test_renewing_errors(socket, plug, api):
    without_timeout = start(api)
    assert api.put(f"/api/instance/{without_timeout}/renew").status_code == 422
    stopped = start(api, emergencyStopTimeout=1000)
    overdue(stopped)
    sweep()
    response = api.put(f"/api/instance/{stopped}/renew")
    assert response.status_code == 409 and response.json()["code"] == "instance_not_running"
    assert api.put("/api/instance/nope/renew").status_code == 404
    assert api.put(f"/api/instance/{without_timeout}/renew", {"emergencyStopTimeout": 0}).status_code == 422


def test_the_renew_call_is_in_the_openapi_schema(api):
    schema = api.get("/api/schema", HTTP_ACCEPT="application/json").json()
    assert "put" in schema["paths"]["/api/instance/{id}/renew"]


def test_a_timeout_during_an_outage_is_committed_and_reconcile_powers_off_later(socket, plug, api, fast_device_timeouts):
    instance_id = start(api, emergencyStopTimeout=60000)
    overdue(instance_id)
    plug.set_fault("refuse")
    assert sweep() == [instance_id]
    instance = Instance.objects.get(pk=instance_id)
    assert instance.stop_reason == StopReason.TIMEOUT and not instance.is_running
    socket.refresh_from_db()
    assert (socket.desired_power, socket.desired_by, socket.observed_power) == (PowerState.OFF, "<timeout>", PowerState.UNKNOWN)
    assert plug.is_on and PowerPeriod.objects.get().is_open

    plug.clear_fault()
    assert reconcile_socket(socket.pk) == "switched"
    assert not plug.is_on
    period = PowerPeriod.objects.get()
    assert (period.power_off_by, period.power_off_cause) == ("<timeout>", "timeout")
    assert Socket.objects.get(pk=socket.pk).observed_power == PowerState.OFF


@pytest.mark.django_db(transaction=True)
def test_a_deadline_on_a_hanging_plug_does_not_hold_up_another_socket(socket, plug, api, fast_device_timeouts):
    with SimulatorServer(plug=PlugSimulator()) as other:
        socket_create(name="other", address=other.url)
        instance_id = start(api, emergencyStopTimeout=60000)
        overdue(instance_id)
        plug.set_fault("timeout")  # answers nothing until the 0.5 s read timeout
        sweeping = threading.Thread(target=lambda: (sweep(), connection.close()))
        sweeping.start()
        time.sleep(0.1)
        began = time.monotonic()
        response = api.post("/api/instance", {"socket": "other"})
        took = time.monotonic() - began
        sweeping.join()
        assert response.status_code == 200 and other.plug.is_on
        assert took < 0.4, f"a start on another socket waited {took:.2f} s behind the hanging plug"
    instance = Instance.objects.get(pk=instance_id)
    assert instance.stop_reason == StopReason.TIMEOUT and instance.triggered_power_off
    assert Socket.objects.get(pk=socket.pk).desired_power == PowerState.OFF
