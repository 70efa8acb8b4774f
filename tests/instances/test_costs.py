"""What a start and a stop cost: SQL statements per call (test transactions add a SAVEPOINT/RELEASE pair;
the ledger adds 3: lock its head, insert the call's events, move the head; the last stop's energy sharing adds 2 to 4:
the samples not shared yet, the holders over them, their figures, the socket's mark) and device requests, counted at the simulator. `bench/cycles.py` prints the same against gunicorn."""
import pytest

from instances.models import Instance

pytestmark = pytest.mark.django_db


def requests_made(plug, call) -> list[str]:
    before = len(plug.commands)
    call()
    return plug.commands[before:]


def test_a_start_and_stop_that_switch_cost_few_statements_and_one_round_trip_to_stop(api, socket, plug, django_assert_max_num_queries):
    with django_assert_max_num_queries(16):
        sent = requests_made(plug, lambda: api.post("/api/instance", {"emergencyStopTimeout": 60000}))
    assert sent == ["Status 0", "PulseTime 165", "Power On"], "relay and meter, the plug's own timer, the switch"
    instance_id = Instance.objects.get().pk
    with django_assert_max_num_queries(19):
        sent = requests_made(plug, lambda: api.put(f"/api/instance/{instance_id}"))
    assert sorted(sent) == ["Power Off", "Status 10"], "the closing reading overlaps the switch: one round trip"


def test_a_start_and_stop_that_switch_nothing_cost_no_device_request(api, socket, plug, django_assert_max_num_queries):
    first = api.post("/api/instance", {"emergencyStopTimeout": 60000}).json()["instance"]["id"]
    with django_assert_max_num_queries(14):
        sent = requests_made(plug, lambda: api.post("/api/instance", {"emergencyStopTimeout": 30000}))
    assert sent == [], "the meter snapshot comes from the sample just taken; the timer already covers the deadline"
    second = Instance.objects.exclude(pk=first).get()
    assert second.energy_at_start["takenAt"], "the snapshot says how old it is"
    with django_assert_max_num_queries(13):
        sent = requests_made(plug, lambda: api.put(f"/api/instance/{second.pk}"))
    assert sent == []
    assert requests_made(plug, lambda: api.post("/api/instance", {"emergencyStopTimeout": 120000})) == ["PulseTime 225"], \
        "a later deadline moves the plug's timer: one request"
