"""Socket-wide calls: wait, emergency stop, recover, status, download, start-wait-stop, sockets, schema."""
import json

import pytest

from instances.models import Callback, Instance
from sockets.models import PowerPeriod, Socket

pytestmark = pytest.mark.django_db


def start(api, **data) -> dict:
    response = api.post("/api/instance", data)
    assert response.status_code == 200, response.content
    return response.json()


def test_wait_stores_a_callback_per_callback_header_and_echoes_them(api, socket):
    response = api.get("/api/wait", {"duration": "2.5"}, HTTP_CPEE_CALLBACK="http://127.0.0.1:9/callbacks/abc/", HTTP_CPEE_CALLBACK_ID="abc", HTTP_X_OTHER="1")
    assert response.status_code == 200 and response.json() == {"waiting": True}
    assert response["CPEE-CALLBACK"] == "true"
    callback = Callback.objects.get()
    assert callback.url == "http://127.0.0.1:9/callbacks/abc/" and callback.payload == {"waiting": False}
    assert 2.4 <= (callback.due_at - callback.created_at).total_seconds() <= 2.6


def test_wait_without_callback_header_stores_nothing(api, socket):
    response = api.get("/api/wait?duration=1")
    assert response.status_code == 200 and "CPEE-CALLBACK" not in response
    assert not Callback.objects.exists()


@pytest.mark.parametrize("duration", [None, "", "abc", "-1", "nan", "inf", "1e12"])
def test_wait_rejects_bad_durations_with_422(api, socket, duration):
    response = api.get("/api/wait", {} if duration is None else {"duration": duration}, HTTP_CPEE_CALLBACK="http://127.0.0.1:9/cb/")
    assert response.status_code == 422 and "duration" in response.json()["message"]
    assert not Callback.objects.exists()


def test_emergency_stop_stops_everything_powers_off_and_blocks_starts_until_recover(api, socket, plug):
    a, b = start(api)["instance"]["id"], start(api)["instance"]["id"]
    response = api.post(f"/api/emergency-stop/{a}")
    assert response.status_code == 200
    assert sorted(response.json()["stoppedInstances"]) == sorted([a, b]) and response.json()["instanceId"] == a
    assert not plug.is_on
    for instance_id in (a, b):
        body = api.get(f"/api/instance/{instance_id}").json()["instance"]
        assert body["isEmergencyStopped"] is True and body["isRunning"] is False and body["stopReason"] == "emergency"
    period = PowerPeriod.objects.get()
    assert period.power_off_by == "<emergency>" and period.power_off_cause == "emergency"
    assert api.get("/api/server/status").json()["isEmergencyStopped"] is True

    blocked = api.post("/api/instance")
    assert blocked.status_code == 409 and blocked.json()["code"] == "socket_emergency_stopped"
    assert Instance.objects.count() == 2 and not plug.is_on
    # a process that stops its instance after the emergency stop must not fail
    assert api.put(f"/api/instance/{a}").status_code == 200

    assert api.put("/api/recover").json()["message"]
    assert start(api)["triggeredPowerOn"] is True and plug.is_on


def test_emergency_stop_without_instances_still_locks(api, socket, plug):
    response = api.post("/api/emergency-stop")
    assert response.status_code == 200 and response.json()["stoppedInstances"] == []
    assert Socket.objects.get().is_emergency_stopped


def test_emergency_stop_with_unknown_instance_is_404_and_changes_nothing(api, socket, plug):
    start(api)
    response = api.post("/api/emergency-stop/unknown")
    assert response.status_code == 404
    assert plug.is_on and not Socket.objects.get().is_emergency_stopped


def test_emergency_stop_accepts_the_cpee_literal_path(api, socket, plug):
    instance_id = start(api)["instance"]["id"]
    response = api.post("/api/emergency-stop/:instanceId", f"instanceId={instance_id}", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and response.json()["instanceId"] == instance_id


def test_status_reports_running_instances_and_power_history(api, socket, plug):
    a = start(api)["instance"]["id"]
    b = start(api)["instance"]["id"]
    api.put(f"/api/instance/{a}")
    status = api.get("/api/server/status").json()
    assert status["runningInstances"] == [b] and status["power"] == "ON"
    assert status["powerStatus"][0]["powerOn"]["instanceId"] == a and status["powerStatus"][0]["powerOff"] is None
    assert status["instancesStopping"] == [] and status["isEmergencyStopped"] is False
    assert status["energyToday"] is not None and status["initialEnergy"] == pytest.approx(12.345, abs=0.01)
    assert {"latestEmergencyStopTimeoutInstanceId", "currentTimestamp"} <= set(status)


def test_download_is_a_streamed_attachment_with_server_and_instances(api, socket):
    a = start(api)["instance"]["id"]
    response = api.get("/api/download")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="server_state.json"'
    body = json.loads(b"".join(response.streaming_content))
    assert body["server"]["runningInstances"] == [a] and body["instances"][a]["id"] == a


def test_start_wait_stop_starts_now_and_plans_the_stop(api, socket, plug):
    response = api.post("/api/start-wait-stop", "duration=3", content_type="application/x-www-form-urlencoded", HTTP_CPEE_CALLBACK="http://127.0.0.1:9/cb/")
    assert response.status_code == 200 and response["CPEE-CALLBACK"] == "true"
    instance = response.json()["instance"]
    assert instance["isRunning"] and plug.is_on
    callback = Callback.objects.get()
    assert callback.instance_id == instance["id"] and callback.kind == "start-wait-stop"
    assert 2.9 <= (callback.due_at - Instance.objects.get().started_at).total_seconds() <= 3.1


def test_start_wait_stop_validates_before_starting(api, socket, plug):
    response = api.post("/api/start-wait-stop", {"duration": "-3"})
    assert response.status_code == 422 and not Instance.objects.exists() and not plug.is_on


def test_sockets_list_and_detail(api, socket, plug):
    start(api)
    listed = api.get("/api/sockets").json()
    assert listed["results"][0]["name"] == "default" and listed["results"][0]["runningInstances"] == 1
    detail = api.get("/api/sockets/default/").json()
    assert detail["observedPower"] == "ON" and detail["isEmergencyStopped"] is False and detail["lastSeenAt"]
    assert api.get("/api/sockets/nosuch").status_code == 404
    periods = api.get("/api/sockets/default/power-periods").json()["results"]
    assert len(periods) == 1 and periods[0]["powerOffAt"] is None


def test_openapi_schema_and_docs_are_served(api, socket):
    schema = api.get("/api/schema", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"] if schema["Content-Type"].startswith("application/json") else schema.content.decode()
    assert "/api/instance" in paths and "/api/wait" in paths
    assert api.get("/api/docs").status_code == 200
