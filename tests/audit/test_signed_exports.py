"""Exports that prove themselves, and the auditor's question answered from the admin and from a download:
"who switched socket X on and off, why, and how much energy did each instance use?"."""
import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import Event, EventKind

pytestmark = pytest.mark.django_db
ROBOT = {"user": "robot-7", "via": "token", "ip": "192.0.2.44"}


@pytest.fixture
def run(socket, plug, django_user_model, api) -> dict:
    """Two overlapping holders: a robot with a token starts the first, a trusted-network script the second; the
    robot stops its own, the script's ends at its deadline."""
    robot = APIClient(REMOTE_ADDR="192.0.2.44")
    robot.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=django_user_model.objects.create_user('robot-7')).key}")
    first = robot.post("/api/instance", HTTP_CPEE_LABEL="Pipette A").json()["instance"]["id"]
    second = api.post("/api/instance", {"emergencyStopTimeout": "60000"}, HTTP_CPEE_LABEL="Shaker").json()["instance"]["id"]
    assert robot.put(f"/api/instance/{first}").status_code == 200
    assert api.put(f"/api/instance/{second}").status_code == 200
    return {"first": first, "second": second}


def download(api, tmp_path, fmt: str):
    response = api.get("/api/download", {"format": fmt})
    assert response.status_code == 200
    path = tmp_path / f"report.{fmt}"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def verify(path, *args) -> str:
    out = io.StringIO()
    call_command("verify_download", str(path), *args, stdout=out)
    return out.getvalue()


def refused(path, *args) -> str:
    with pytest.raises(CommandError) as error:
        call_command("verify_download", str(path), *args, stdout=io.StringIO())
    return str(error.value)


def test_an_untouched_json_download_verifies_and_one_changed_character_names_its_record(run, api, tmp_path):
    path = download(api, tmp_path, "json")
    assert "valid" in verify(path)
    public_key = api.get("/api/events/public-key").json()
    assert public_key["algorithm"] == "Ed25519"
    assert "valid" in verify(path, "--public-key", public_key["publicKey"]), "verifiable with the published key alone"

    text = path.read_text()
    label = '"label": "Shaker"'
    assert text.count(label) == 1
    path.write_text(text.replace(label, '"label": "Shakes"'))
    assert run["second"] in refused(path)


def test_an_untouched_csv_download_verifies_and_one_changed_character_names_its_row(run, api, tmp_path):
    path = download(api, tmp_path, "csv")
    assert "valid" in verify(path)

    lines = path.read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith(run["first"]))
    lines[row] = lines[row].replace("requested", "requestes", 1)
    path.write_text("".join(lines))
    assert f"line {row + 1} (instance {run['first']})" in refused(path)


def test_a_download_does_not_verify_with_another_key(run, api, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.signing import public_key_text

    path = download(api, tmp_path, "json")
    assert "signature" in refused(path, "--public-key", public_key_text(Ed25519PrivateKey.generate().public_key()))


def test_the_download_carries_the_ledger_head_it_was_cut_at(run, api, tmp_path):
    state = json.loads(download(api, tmp_path, "json").read_text())
    newest = Event.objects.latest("seq")
    assert (state["ledger"]["seq"], state["ledger"]["hash"]) == (newest.seq, newest.hash)


def test_the_auditors_question_answered_from_the_download(run, api, tmp_path, socket):
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(download(api, tmp_path, "csv").read_text())) if not row["id"].startswith("#")}
    first, second = rows[run["first"]], rows[run["second"]]

    assert first["started_by"] == first["stopped_by"] == "robot-7 (token, 192.0.2.44)"
    assert second["started_by"] == "127.0.0.1 (trusted-network)" and second["label"] == "Shaker"
    assert first["powered_on_by"] == run["first"] and second["powered_off_by"] == run["second"], "who switched the plug on and off"
    assert (first["stop_reason"], second["stop_reason"]) == ("requested", "requested")
    assert first["energy_wh"] != "" and first["socket_energy_wh"] != ""


def test_the_auditors_question_answered_from_the_admin(run, admin_client, socket):
    page = admin_client.get("/admin/audit/event/", {"socket__id__exact": socket.pk, "kind": EventKind.POWER_ON}).content.decode()
    assert run["first"] in page and "robot-7 (token, 192.0.2.44)" in page, "the plug went ON for the robot's instance"

    page = admin_client.get("/admin/audit/event/", {"socket__id__exact": socket.pk}).content.decode()
    for who in ("robot-7 (token, 192.0.2.44)", "127.0.0.1 (trusted-network)"):
        assert who in page, who
    assert "Pipette A" in page and "Shaker" in page

    csv_export = admin_client.post("/admin/audit/event/", {"action": "export_csv", "_selected_action": list(Event.objects.values_list("pk", flat=True))})
    assert csv_export.status_code == 200 and "robot-7" in b"".join(csv_export.streaming_content).decode()
