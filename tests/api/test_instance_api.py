"""The seed's /api/instance calls: answers, rows and power history."""
import time

import pytest

from instances.models import Instance, StopReason
from sockets.models import PowerPeriod, PowerState, Socket
from sockets.services import socket_create
from sockets.simulator import SimulatorServer

pytestmark = pytest.mark.django_db


def start(api, **data):
    response = api.post("/api/instance", data)
    assert response.status_code == 200, response.content
    return response.json()


def test_start_powers_the_socket_on_and_opens_a_period(api, socket, plug):
    body = start(api, emergencyStopTimeout="60000")

    assert body["triggeredPowerOn"] is True
    instance = body["instance"]
    assert instance["isRunning"] is True and instance["socket"] == "default"
    assert instance["emergencyStopTimeout"] == 60000 and instance["deadline"]
    assert instance["energy"]["total"] == pytest.approx(12.345, abs=0.01)
    assert plug.is_on and plug.power_on_commands == 1
    period = PowerPeriod.objects.get()
    assert period.power_off_at is None and period.power_on_by == instance["id"]
    socket.refresh_from_db()
    assert socket.observed_power == PowerState.ON and socket.is_online


def test_the_answer_carries_every_seed_field(api, socket):
    instance = start(api)["instance"]
    seed = {"id", "energy", "amperagePerSecond", "emergencyStopTimeout", "startTimestamp", "stopTimestamp",
            "powerOnTimestamp", "powerOffTimestamp", "isEmergencyStopped", "isManuallyStopped"}
    ours = {"socket", "isRunning", "stopReason", "deadline", "energyConsumedWh"}
    assert seed | ours <= set(instance)
    assert instance["emergencyStopTimeout"] is None and instance["deadline"] is None


def test_only_the_first_start_and_the_last_stop_switch_the_plug(api, socket, plug):
    first, second = start(api), start(api)
    assert (first["triggeredPowerOn"], second["triggeredPowerOn"]) == (True, False)
    assert second["instance"]["powerOnTimestamp"] == first["instance"]["powerOnTimestamp"]

    stop1 = api.put(f"/api/instance/{first['instance']['id']}").json()
    assert stop1["triggeredPowerOff"] is False and plug.is_on
    assert stop1["instance"]["powerOffTimestamp"] is None
    stop2 = api.put(f"/api/instance/{second['instance']['id']}").json()
    assert stop2["triggeredPowerOff"] is True and not plug.is_on
    assert stop2["instance"]["stopReason"] == "requested"
    assert (plug.power_on_commands, plug.power_off_commands) == (1, 1)
    period = PowerPeriod.objects.get()
    assert period.power_off_by == second["instance"]["id"] and period.power_off_cause == "requested"


def test_interleaved_starts_and_stops_make_one_period_each_time_the_plug_goes_on(api, socket, plug):
    a = start(api)["instance"]["id"]
    b = start(api)["instance"]["id"]
    api.put(f"/api/instance/{a}")
    c = start(api)
    assert c["triggeredPowerOn"] is False
    api.put(f"/api/instance/{b}")
    assert api.put(f"/api/instance/{c['instance']['id']}").json()["triggeredPowerOff"] is True
    d = start(api)
    assert d["triggeredPowerOn"] is True
    api.put(f"/api/instance/{d['instance']['id']}")
    periods = list(PowerPeriod.objects.order_by("power_on_at"))
    assert len(periods) == 2 and all(p.power_off_at for p in periods)
    assert periods[0].power_off_at <= periods[1].power_on_at
    assert plug.power_on_commands == 2 and not plug.is_on


def test_cpee_style_calls_with_form_bodies_and_the_literal_instance_id_path(api, socket, plug):
    cpee = {"HTTP_CPEE_INSTANCE_URL": "https://cpee.example/flow/engine/42", "HTTP_CPEE_LABEL": "Start mixer"}
    response = api.post("/api/instance", "emergencyStopTimeout=20000", content_type="application/x-www-form-urlencoded", **cpee)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    instance_id = response.json()["instance"]["id"]
    stored = Instance.objects.get(pk=instance_id)
    assert stored.client_instance_url.endswith("/42") and stored.client_label == "Start mixer"

    got = api.get("/api/instance/:instanceId", {"instanceId": instance_id})
    assert got.status_code == 200 and got.json()["instance"]["id"] == instance_id
    stopped = api.put("/api/instance/:instanceId", f"instanceId={instance_id}", content_type="application/x-www-form-urlencoded")
    assert stopped.status_code == 200 and stopped.json()["triggeredPowerOff"] is True
    assert not plug.is_on


@pytest.mark.parametrize("path", ["/api/instance", "/api/instance/", "/api/server/status", "/api/server/status/", "/api/sockets", "/api/sockets/"])
def test_routes_answer_with_and_without_trailing_slash_without_redirecting(api, socket, path):
    method = api.post if path.startswith("/api/instance") else api.get
    response = method(path)
    assert response.status_code == 200, response.content


def test_json_bodies_are_accepted(api, socket):
    response = api.post("/api/instance", {"emergencyStopTimeout": 5000}, format="json")
    assert response.status_code == 200 and response.json()["instance"]["emergencyStopTimeout"] == 5000


def test_repeat_stop_answers_200_and_changes_nothing(api, socket, plug):
    instance_id = start(api)["instance"]["id"]
    first = api.put(f"/api/instance/{instance_id}").json()
    again = api.put(f"/api/instance/{instance_id}")
    assert again.status_code == 200
    assert again.json()["triggeredPowerOff"] is False
    assert again.json()["instance"]["stopTimestamp"] == first["instance"]["stopTimestamp"]
    assert plug.power_off_commands == 1


def test_get_unknown_instance_is_404_json(api, socket):
    response = api.get("/api/instance/nope")
    assert response.status_code == 404 and response.json()["code"] == "instance_not_found"


def test_stop_without_id_is_422(api, socket):
    for response in (api.put("/api/instance"), api.put("/api/instance/:instanceId"), api.delete("/api/instance")):
        assert response.status_code == 422 and "instanceId" in response.json()["message"]


def test_delete_stops_then_hides_but_keeps_the_row_and_history(api, socket, plug):
    instance_id = start(api)["instance"]["id"]
    response = api.delete(f"/api/instance/{instance_id}")
    assert response.status_code == 200
    assert response.json()["triggeredPowerOff"] is True and response.json()["instance"]["stopReason"] == "deleted"
    assert not plug.is_on
    assert api.get(f"/api/instance/{instance_id}").status_code == 404
    assert api.delete(f"/api/instance/{instance_id}").status_code == 404
    row = Instance.objects.get(pk=instance_id)
    assert row.deleted_at is not None and row.stop_reason == StopReason.DELETED
    assert PowerPeriod.objects.get().power_off_by == instance_id


def test_delete_of_a_stopped_instance_does_not_touch_the_plug(api, socket, plug):
    instance_id = start(api)["instance"]["id"]
    api.put(f"/api/instance/{instance_id}")
    response = api.delete(f"/api/instance/:instanceId?instanceId={instance_id}")
    assert response.status_code == 200 and response.json()["triggeredPowerOff"] is False
    assert response.json()["instance"]["stopReason"] == "requested"
    assert plug.power_off_commands == 1


def test_list_shows_visible_instances(api, socket):
    kept, deleted = start(api)["instance"]["id"], start(api)["instance"]["id"]
    api.delete(f"/api/instance/{deleted}")
    ids = [i["id"] for i in api.get("/api/instance").json()["instances"]]
    assert ids == [kept]


def test_a_named_socket_is_used_and_an_unknown_one_is_404(api, socket, plug):
    with SimulatorServer() as other:
        socket_create(name="pump", address=other.url)
        body = start(api, socket="pump")
        assert body["instance"]["socket"] == "pump" and other.plug.is_on and not plug.is_on
    response = api.post("/api/instance", {"socket": "nosuch"})
    assert response.status_code == 404 and response.json()["code"] == "socket_not_found"
    assert Instance.objects.count() == 1


def test_energy_consumed_comes_from_the_meter(api, socket, plug):
    plug.load_w = 36000  # 10 Wh per second, visible at Tasmota's 3 decimals of kWh
    instance_id = start(api)["instance"]["id"]
    time.sleep(0.5)
    from instances.tasks import monitor_socket

    Socket.objects.filter(pk=socket.pk).update(next_sample_at=None)
    monitor_socket(socket.pk)  # a monitoring sample during the run: its current
    time.sleep(0.5)
    stopped = api.put(f"/api/instance/{instance_id}").json()["instance"]
    assert 8 <= stopped["energyConsumedWh"] <= 30, "up to the stop: its closing reading counts"
    assert stopped["amperagePerSecond"] and max(stopped["amperagePerSecond"]) > 100


def test_a_running_instance_reports_the_energy_counted_so_far(api, socket, plug):
    plug.load_w = 36000  # 10 Wh per second
    instance_id = start(api)["instance"]["id"]
    assert api.get(f"/api/instance/{instance_id}").json()["instance"]["energyConsumedWh"] in (0.0, None)
    time.sleep(1.0)
    from instances.tasks import monitor_socket

    Socket.objects.filter(pk=socket.pk).update(next_sample_at=None)
    monitor_socket(socket.pk)  # a monitoring sample: its interval is shared among the holders
    running = api.get(f"/api/instance/{instance_id}").json()["instance"]
    assert running["isRunning"] and 8 <= running["energyConsumedWh"] <= 30
    assert running["socketEnergyWh"] == running["energyConsumedWh"], "alone on the plug: all of it is its share"


def test_the_list_costs_no_query_per_instance(api, socket, django_assert_max_num_queries):
    for _ in range(3):
        start(api)
    with django_assert_max_num_queries(4):
        few = api.get("/api/instance").json()["instances"]
    for _ in range(12):
        start(api)
    from instances.tasks import monitor_socket

    Socket.objects.filter(pk=socket.pk).update(next_sample_at=None)
    monitor_socket(socket.pk)  # one monitoring sample while all of them run
    with django_assert_max_num_queries(4):
        many = api.get("/api/instance").json()["instances"]
    assert (len(few), len(many)) == (3, 15)
    assert all(i["amperagePerSecond"] for i in many)  # each saw the sample
