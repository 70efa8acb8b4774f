"""GET /api/download: the whole state as streamed JSON, the instances report as CSV."""
import csv
import io
import json

import pytest

from instances.selectors import instance_meter
from tests.admin.history import at, make_history

pytestmark = pytest.mark.django_db


def download(api, **params):
    response = api.get("/api/download", params)
    assert response.status_code == 200, response.content
    assert response.streaming
    return response, b"".join(response.streaming_content).decode()


def csv_records(body: str) -> list[dict]:
    """The report's rows, without its `#checkpoint` and `#signature` lines."""
    return [row for row in csv.DictReader(io.StringIO(body)) if not row["id"].startswith("#")]


def test_it_streams_the_state_as_a_json_attachment(api):
    history = make_history()

    response, body = download(api)

    assert response["Content-Disposition"] == 'attachment; filename="server_state.json"'
    state = json.loads(body)
    assert set(state) == {"ledger", "server", "instances", "signature"}
    assert state["server"]["socket"] == "default"
    assert set(state["instances"]) == {"alpha", "beta", "gamma", "delta"}
    gamma = state["instances"]["gamma"]
    assert gamma["socket"] == "mixer"
    assert gamma["stopReason"] == "emergency" and gamma["isEmergencyStopped"] is True
    assert gamma["energyConsumedWh"] == 9.583
    # The currents are the ones the API shows for the instance, read without a query per instance.
    for pk, instance in history.instances.items():
        assert state["instances"][pk]["amperagePerSecond"] == instance_meter(instance=instance).currents
    assert len(gamma["amperagePerSecond"]) == 11  # 10:00 … 10:05 every 30 s
    assert max(gamma["amperagePerSecond"]) == 0.5


def test_it_answers_the_same_facts_as_a_csv_report(api):
    make_history()

    response, body = download(api, format="csv")

    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="instances.csv"'
    rows = csv_records(body)
    assert list(rows[0]) == ["id", "socket", "start", "stop", "duration_s", "stop_reason", "energy_wh", "peak_current_a", "socket_energy_wh",
                             "label", "instance_url", "started_by", "stopped_by", "powered_on_by", "powered_off_by", "seal"]
    assert body.splitlines()[-1].startswith("#signature,4,")
    assert [row["id"] for row in rows] == ["alpha", "beta", "gamma", "delta"]
    beta = {column: rows[1][column] for column in ("id", "socket", "start", "stop", "duration_s", "stop_reason", "energy_wh", "peak_current_a")}
    assert beta == {
        "id": "beta", "socket": "mixer", "start": at(10).isoformat(), "stop": at(30).isoformat(), "duration_s": "1200.0",
        "stop_reason": "requested", "energy_wh": "28.75", "peak_current_a": "0.5",
    }
    delta = rows[3]
    assert (delta["stop"], delta["duration_s"], delta["stop_reason"]) == ("", "", "")
    assert delta["peak_current_a"] == "0.5"
    # Still running: its share so far (alone, 115 W for the 10 minutes sampled since its start).
    assert float(delta["energy_wh"]) == pytest.approx(19.167, abs=0.001)
    assert [float(row["socket_energy_wh"]) for row in rows[:2]] == [38.333, 38.333], "the plug's whole figure over each run" 


def test_it_filters_by_time_range_and_socket(api):
    make_history()
    make_history(name="pump")

    _, body = download(api, format="csv", since=at(25).isoformat(), until=at(62).isoformat(), socket="pump")

    rows = csv_records(body)
    # beta ran until 09:30 and gamma started at 10:00: both overlap 09:25–10:02; alpha had stopped.
    assert [(row["id"], row["socket"]) for row in rows] == [("pump-beta", "pump"), ("pump-gamma", "pump")]


def test_it_rejects_an_unknown_socket_and_a_bad_format(api):
    assert api.get("/api/download", {"socket": "nope"}).status_code == 404
    assert api.get("/api/download", {"format": "xml"}).status_code == 422


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_its_query_count_does_not_grow_with_the_instances(api, django_assert_max_num_queries, fmt):
    for name in ("a", "b", "c", "d", "e"):
        make_history(name=name)  # 20 instances, 2000 samples

    with django_assert_max_num_queries(12):
        _, body = download(api, format=fmt)

    assert body.count("alpha") >= 5


def test_the_api_and_the_download_write_exactly_what_the_declared_fields_render(api, socket, plug):
    """instance_representation() writes an instance for the API and the download (fast: no model in the download);
    the serializer's declared fields document it (OpenAPI). They must agree, field by field, in order."""
    from rest_framework import serializers

    from instances.api.serializers import InstanceSerializer
    from instances.models import Instance
    from instances.selectors import instance_list_with_meter

    from instances.tasks import monitor_socket
    from sockets.models import Socket

    make_history()
    Instance.objects.filter(pk="beta").update(stopped_at=None, stop_reason="")  # a running one too
    # through the API: who started and stopped it, a deadline, CPEE's label and URL; and one a hand ended
    cpee = {"HTTP_CPEE_LABEL": "Mix sample ü", "HTTP_CPEE_INSTANCE_URL": "https://cpee.example/flow/engine/7"}
    requested = api.post("/api/instance", {"emergencyStopTimeout": 60000}, **cpee).json()["instance"]["id"]
    api.put(f"/api/instance/{requested}")
    by_hand = api.post("/api/instance").json()["instance"]["id"]
    plug.press_button()
    Socket.objects.filter(pk=socket.pk).update(next_sample_at=None)
    monitor_socket(socket.pk)
    assert Instance.objects.get(pk=by_hand).stop_reason == "manual" and Instance.objects.get(pk=requested).stopped_by
    _, body = download(api)
    downloaded = json.loads(body)["instances"]
    serializer = InstanceSerializer()
    for instance in instance_list_with_meter(instances=Instance.objects.all()):
        declared = serializers.ModelSerializer.to_representation(serializer, instance)  # DRF, from the declared fields
        declared["stopReason"] = declared["stopReason"] or None
        written = serializer.to_representation(instance)
        assert written == declared and list(written) == list(serializer.fields), instance.pk
        assert {key: value for key, value in downloaded[instance.pk].items() if key != "seal"} == json.loads(json.dumps(declared))
        assert api.get(f"/api/instance/{instance.pk}").json()["instance"] == json.loads(json.dumps(declared))
