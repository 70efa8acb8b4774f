"""The "Export selected rows as CSV" action on the list pages."""
import csv
import io

import pytest

from sockets.models import EnergySample

from .history import at, make_history

pytestmark = pytest.mark.django_db


def export(client, model: str, pks) -> tuple[object, list[dict]]:
    response = client.post(f"/admin/{model}/", {"action": "export_csv", "_selected_action": [str(pk) for pk in pks]})
    assert response.status_code == 200
    response.body = b"".join(response.streaming_content).decode()
    return response, list(csv.DictReader(io.StringIO(response.body)))


def test_instances_export_as_the_download_report(admin_client):
    make_history()

    response, rows = export(admin_client, "instances/instance", ["gamma", "alpha"])

    assert response["Content-Disposition"] == 'attachment; filename="instances.csv"'
    columns = ("id", "socket", "start", "stop", "duration_s", "stop_reason", "energy_wh", "peak_current_a")
    assert [{column: row[column] for column in columns} for row in rows if not row["id"].startswith("#")] == [
        {"id": "alpha", "socket": "mixer", "start": at(0).isoformat(), "stop": at(20).isoformat(), "duration_s": "1200.0",
         "stop_reason": "requested", "energy_wh": "28.75", "peak_current_a": "0.5"},
        {"id": "gamma", "socket": "mixer", "start": at(60).isoformat(), "stop": at(65).isoformat(), "duration_s": "300.0",
         "stop_reason": "emergency", "energy_wh": "9.583", "peak_current_a": "0.5"},
    ]


def test_power_periods_export_who_and_why(admin_client):
    history = make_history()

    response, rows = export(admin_client, "sockets/powerperiod", [p.pk for p in history.periods[1:3]])

    assert response["Content-Disposition"] == 'attachment; filename="powerperiods.csv"'
    assert [(r["socket__name"], r["power_on_at"], r["power_on_by"], r["power_off_by"], r["power_off_cause"]) for r in rows] == [
        ("mixer", at(120).isoformat(), "<manual>", "<manual>", "manual"),
        ("mixer", at(60).isoformat(), "gamma", "<emergency>", "emergency"),
    ]


def test_samples_and_callbacks_export(admin_client):
    history = make_history()
    samples = list(EnergySample.objects.filter(socket=history.socket, taken_at__gte=at(61)).order_by("taken_at")[:2])

    _, sample_rows = export(admin_client, "sockets/energysample", [s.pk for s in samples])
    _, callback_rows = export(admin_client, "instances/callback", [c.pk for c in history.callbacks])

    assert [(r["taken_at"], r["power_w"], r["current_a"]) for r in sample_rows] == [
        (s.taken_at.isoformat(), "115.0", "0.5") for s in reversed(samples)
    ]
    assert {(r["instance_id"], r["delivered_at"]) for r in callback_rows} == {("alpha", at(20).isoformat()), ("", "")}


def test_sockets_export_without_credentials(admin_client):
    history = make_history()
    history.socket.password = "s3cret"
    history.socket.save()

    response, rows = export(admin_client, "sockets/socket", [history.socket.pk])

    assert [r["name"] for r in rows] == ["mixer"] and "password" not in rows[0]
    assert "s3cret" not in response.body and "mixer" in response.body
