"""What a start and a stop cost (issue 9): SQL statements per call — transaction control (BEGIN, COMMIT, the test's
SAVEPOINTs) not counted — and device requests, counted at the simulator. `bench/cycles.py` prints the same
against gunicorn."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from instances.models import Instance
from sockets.models import Socket

pytestmark = pytest.mark.django_db

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def costs(plug, call) -> tuple[list[str], list[str]]:
    """(SQL statements, device requests) of one call."""
    before = len(plug.commands)
    with CaptureQueriesContext(connection) as queries:
        call()
    statements = [query["sql"] for query in queries.captured_queries if not query["sql"].startswith(TRANSACTION_CONTROL)]
    return statements, plug.commands[before:]


def at_most(statements: list[str], limit: int) -> bool:
    assert len(statements) <= limit, f"{len(statements)} statements:\n" + "\n".join(sql[:160] for sql in statements)
    return True


def test_a_start_and_a_stop_that_switch_cost_ten_statements_and_one_round_trip_each(api, socket, plug):
    first = api.post("/api/instance", {"emergencyStopTimeout": 60000}).json()["instance"]["id"]
    api.put(f"/api/instance/{first}")  # the relay is now confirmed OFF, and the plug holds PulseTime 165

    statements, sent = costs(plug, lambda: api.post("/api/instance", {"emergencyStopTimeout": 60000}))
    assert at_most(statements, 10)
    assert sorted(sent) == ["Power On", "Status 10"], "the switch with the meter read alongside; the saved PulseTime is restarted, not sent"
    instance = Instance.objects.get(stopped_at=None)
    assert instance.energy_at_start["takenAt"], "the snapshot says when it was read"

    statements, sent = costs(plug, lambda: api.put(f"/api/instance/{instance.pk}"))
    assert at_most(statements, 10)
    assert sorted(sent) == ["Power Off", "Status 10"], "the closing reading overlaps the switch: one round trip"


def test_the_response_of_a_stop_carries_its_meter_without_another_query(api, socket, plug):
    plug.load_w = 1000.0
    instance = api.post("/api/instance").json()["instance"]["id"]
    Socket.objects.filter(pk=socket.pk).update(next_sample_at=None)
    from instances.tasks import monitor_socket

    monitor_socket(socket.pk)  # one sample while it runs
    answer = api.put(f"/api/instance/{instance}").json()["instance"]
    again = api.get(f"/api/instance/{instance}").json()["instance"]
    assert answer["amperagePerSecond"] == again["amperagePerSecond"] and len(answer["amperagePerSecond"]) == 2, "the start's reading and the sample"
    assert answer["energyConsumedWh"] == again["energyConsumedWh"] and answer["socketEnergyWh"] == again["socketEnergyWh"]


def test_a_first_start_on_a_relay_not_seen_lately_reads_it_first(api, socket, plug):
    statements, sent = costs(plug, lambda: api.post("/api/instance", {"emergencyStopTimeout": 60000}))
    assert at_most(statements, 11)
    assert sent == ["Status 0", "PulseTime 165", "Power On"], "relay and meter, the plug's own timer (not known yet), the switch"


def test_a_device_fault_forgets_the_plugs_timer_setting(api, socket, plug):
    first = api.post("/api/instance", {"emergencyStopTimeout": 60000}).json()["instance"]["id"]
    api.put(f"/api/instance/{first}")
    plug.set_fault("http500", count=1, only="Power On")
    assert api.post("/api/instance", {"emergencyStopTimeout": 60000}).status_code >= 500
    assert Socket.objects.get(pk=socket.pk).failsafe_preset_seconds is None, "the setting may or may not have changed"


def test_a_start_and_stop_that_switch_nothing_cost_no_device_request(api, socket, plug):
    first = api.post("/api/instance", {"emergencyStopTimeout": 60000}).json()["instance"]["id"]
    statements, sent = costs(plug, lambda: api.post("/api/instance", {"emergencyStopTimeout": 30000}))
    assert at_most(statements, 10)
    assert sent == [], "the meter snapshot comes from the sample just taken; the timer already covers the deadline"
    second = Instance.objects.exclude(pk=first).get()
    assert second.energy_at_start["takenAt"], "the snapshot says how old it is"
    statements, sent = costs(plug, lambda: api.put(f"/api/instance/{second.pk}"))
    assert at_most(statements, 10)
    assert sent == []
    _, sent = costs(plug, lambda: api.post("/api/instance", {"emergencyStopTimeout": 120000}))
    assert sent == ["PulseTime 225"], "a later deadline moves the plug's timer: one request"
