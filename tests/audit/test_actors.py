"""Who: every state change names the user, how they came in and their address; the service's own decisions name nobody."""
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import Event, EventKind

pytestmark = pytest.mark.django_db


def start(client, **headers) -> dict:
    response = client.post("/api/instance", {"emergencyStopTimeout": "60000"}, **headers)
    assert response.status_code == 200, response.content
    return response.json()["instance"]


def stop(client, instance_id: str) -> dict:
    response = client.put(f"/api/instance/{instance_id}")
    assert response.status_code == 200, response.content
    return response.json()["instance"]


def test_a_token_caller_is_named_by_the_tokens_user(socket, plug, django_user_model):
    user = django_user_model.objects.create_user("robot-7")
    client = APIClient(REMOTE_ADDR="192.0.2.44")  # outside the trusted networks: only the token lets it in
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    started = start(client, HTTP_CPEE_LABEL="Pipette A", HTTP_CPEE_INSTANCE_URL="https://cpee.example.org/flow/engine/42")
    stopped = stop(client, started["id"])

    who = {"user": "robot-7", "via": "token", "ip": "192.0.2.44"}
    assert started["startedBy"] == who and started["stoppedBy"] is None
    assert stopped["startedBy"] == stopped["stoppedBy"] == who
    event = Event.objects.get(kind=EventKind.INSTANCE_START)
    assert event.actor == who and event.instance_id == started["id"]
    assert event.client == {"label": "Pipette A", "instanceUrl": "https://cpee.example.org/flow/engine/42"}
    assert Event.objects.get(kind=EventKind.INSTANCE_STOP).actor == who


def test_a_session_caller_is_named_by_their_login(socket, plug, django_user_model):
    client = APIClient(REMOTE_ADDR="127.0.0.1")
    client.force_login(django_user_model.objects.create_user("alice"))

    started = start(client)

    assert started["startedBy"] == {"user": "alice", "via": "session", "ip": "127.0.0.1"}


def test_a_trusted_network_caller_without_a_user_is_named_by_its_address(socket, plug, api):
    started = start(api, HTTP_CPEE_ACTIVITY="a3")
    stopped = stop(api, started["id"])

    anonymous = {"user": None, "via": "trusted-network", "ip": "127.0.0.1"}
    assert started["startedBy"] == stopped["stoppedBy"] == anonymous
    assert Event.objects.get(kind=EventKind.INSTANCE_START).client == {"activity": "a3"}


def test_a_forwarded_header_does_not_change_the_recorded_address(socket, plug, api):
    started = start(api, HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert started["startedBy"]["ip"] == "127.0.0.1", "REMOTE_ADDR is recorded, never a header the caller wrote"


def test_a_caller_outside_the_trusted_networks_without_a_token_is_refused_and_nothing_is_recorded(socket, plug):
    before = Event.objects.count()  # the socket's creation
    response = APIClient(REMOTE_ADDR="192.0.2.44").post("/api/instance")

    assert response.status_code in (401, 403) and "message" in response.json()
    assert Event.objects.count() == before and not plug.is_on


def test_the_service_deciding_names_nobody(socket, plug, api, eager_tasks):
    from datetime import timedelta

    from django.utils import timezone

    from instances.models import Instance
    from instances.tasks import enforce_deadlines

    started = start(api)
    Instance.objects.filter(pk=started["id"]).update(deadline_at=timezone.now() - timedelta(milliseconds=1))
    enforce_deadlines()

    instance = api.get(f"/api/instance/{started['id']}").json()["instance"]
    assert instance["stopReason"] == "timeout" and instance["stoppedBy"] is None
    timeout = Event.objects.get(kind=EventKind.INSTANCE_TIMEOUT)
    assert timeout.actor is None and timeout.reason == "timeout"
    assert Event.objects.get(kind=EventKind.POWER_OFF).data["by"] == "<timeout>"
