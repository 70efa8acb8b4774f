"""The ledger has an event for every kind of decision, with who made it; admin edits and tokens included."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.ledger import ledger_verify
from audit.models import Event, EventKind
from audit.tokens import token_fingerprint
from sockets.models import PowerState, Socket
from sockets.services import socket_create
from instances.tasks import monitor_socket
from sockets.tasks import reconcile_socket

pytestmark = pytest.mark.django_db
ANONYMOUS = {"user": None, "via": "trusted-network", "ip": "127.0.0.1"}


def kinds() -> list[str]:
    return list(Event.objects.order_by("seq").values_list("kind", flat=True))


def last(kind: str) -> Event:
    return Event.objects.filter(kind=kind).latest("seq")


def make_due(socket: Socket) -> None:
    Socket.objects.filter(pk=socket.pk).update(next_sample_at=timezone.now() - timedelta(milliseconds=1))


@pytest.fixture
def robot(django_user_model) -> APIClient:
    client = APIClient(REMOTE_ADDR="192.0.2.44")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=django_user_model.objects.create_user('robot-7')).key}")
    return client


ROBOT = {"user": "robot-7", "via": "token", "ip": "192.0.2.44"}


def test_start_renew_stop_and_delete_are_each_recorded_with_who(socket, plug, robot):
    first = robot.post("/api/instance", {"emergencyStopTimeout": "60000"}).json()["instance"]["id"]
    second = robot.post("/api/instance").json()["instance"]["id"]
    assert robot.put(f"/api/instance/{first}/renew", {"emergencyStopTimeout": "90000"}).status_code == 200
    assert robot.put(f"/api/instance/{first}").status_code == 200
    assert robot.delete(f"/api/instance/{second}").status_code == 200  # running: stopped (the plug goes OFF) and hidden
    assert robot.delete(f"/api/instance/{first}").status_code == 200  # stopped already: only hidden

    assert [kind for kind in kinds() if not kind.startswith(("socket.", "device."))] == ["power.on", "instance.start", "instance.start", "instance.renew", "instance.stop",
                           "power.off", "instance.delete", "instance.delete"]
    assert all(event.actor == ROBOT for event in Event.objects.filter(kind__startswith="instance."))
    assert last(EventKind.INSTANCE_RENEW).data["emergencyStopTimeout"] == 90000
    assert Event.objects.get(kind=EventKind.POWER_ON).instance_id == first
    assert (last(EventKind.POWER_OFF).instance_id, last(EventKind.POWER_OFF).reason) == (second, "deleted")
    assert (last(EventKind.INSTANCE_DELETE).instance_id, last(EventKind.INSTANCE_DELETE).reason) == (first, "requested")
    assert ledger_verify().valid


def test_who_pressed_emergency_stop_survives_recover(socket, plug, admin_client, admin_user, robot):
    held = robot.post("/api/instance").json()["instance"]["id"]
    pressed = admin_client.post(f"/dashboard/sockets/{socket.name}/emergency-stop")
    assert pressed.status_code == 200, pressed.content
    assert robot.put("/api/recover").status_code == 200

    stop = last(EventKind.EMERGENCY_STOP)
    assert stop.actor == {"user": admin_user.username, "via": "session", "ip": "127.0.0.1"}
    assert stop.data["stoppedInstances"] == [held] and not plug.is_on
    stopped = last(EventKind.INSTANCE_STOP)
    assert (stopped.instance_id, stopped.reason, stopped.actor["user"]) == (held, "emergency", admin_user.username)
    recover = last(EventKind.RECOVER)
    assert recover.actor == ROBOT, "who lifted it"
    assert recover.data["pressedBy"] == stop.actor and recover.data["emergencyStopEvent"] == stop.pk, "who had pressed it"
    assert Socket.objects.get(pk=socket.pk).emergency_stopped_by == "", "the lock is lifted; the ledger remembers"


def test_a_hand_on_the_plug_is_recorded_as_manual_and_names_nobody(socket, plug, api):
    held = api.post("/api/instance").json()["instance"]["id"]
    plug.press_button()
    make_due(socket)
    assert monitor_socket(socket.pk) == "manual_off"

    assert (last(EventKind.MANUAL_OFF).actor, last(EventKind.MANUAL_OFF).data["by"]) == (None, "<manual>")
    stopped = last(EventKind.INSTANCE_STOP)
    assert (stopped.instance_id, stopped.reason, stopped.actor) == (held, "manual", None)

    plug.press_button()  # ON by hand with nobody holding it: recorded, and switched OFF again
    make_due(socket)
    assert monitor_socket(socket.pk) == "manual_on"
    assert last(EventKind.MANUAL_ON).actor is None and last(EventKind.POWER_OFF).reason == "unheld"
    assert ledger_verify().valid


def test_device_offline_online_fault_and_reconcile_are_recorded(socket, plug, api, fast_device_timeouts):
    monitor_socket(socket.pk)
    plug.set_fault("refuse")
    make_due(socket)
    monitor_socket(socket.pk)
    assert last(EventKind.DEVICE_OFFLINE).socket_id == socket.pk
    plug.clear_fault()
    make_due(socket)
    monitor_socket(socket.pk)
    assert last(EventKind.DEVICE_ONLINE).seq > last(EventKind.DEVICE_OFFLINE).seq

    held = api.post("/api/instance").json()["instance"]["id"]
    plug.set_fault("wrong_state", count=1)  # the plug answers Power Off with ON: the stop is refused, state unknown
    assert api.put(f"/api/instance/{held}").status_code == 409
    fault = last(EventKind.DEVICE_FAULT)
    assert fault.reason == "wrong_state" and fault.data["error"]

    Socket.objects.filter(pk=socket.pk).update(desired_power=PowerState.OFF, desired_by="<test>")  # the database says OFF; the plug is ON
    assert reconcile_socket(socket.pk) == "switched" and not plug.is_on
    assert last(EventKind.RECONCILE).reason == "switched" and last(EventKind.RECONCILE).data["desired"] == "OFF"
    assert ledger_verify().valid


def test_an_admin_edit_of_a_socket_is_a_field_diff_with_the_password_redacted(admin_client, admin_user):
    from tests.admin.test_sockets import form

    socket = socket_create(name="pump", address="http://192.0.2.7", username="admin", password="old-s3cret")
    admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, address="http://192.0.2.8", password="n3w-s3cret"))

    created, changed = Event.objects.filter(kind=EventKind.SOCKET_CONFIG, socket=socket).order_by("seq")
    assert (created.reason, created.actor) == ("created", None)
    assert changed.reason == "changed" and changed.actor == {"user": admin_user.username, "via": "session", "ip": "127.0.0.1"}
    assert changed.data["changes"]["address"] == ["http://192.0.2.7", "http://192.0.2.8"]
    assert changed.data["changes"]["password"] == ["<redacted>", "<redacted>"]
    assert "s3cret" not in str(list(Event.objects.values_list("data", flat=True)))


def test_tokens_created_and_revoked_in_the_admin_or_by_command_are_recorded_by_fingerprint(admin_client, admin_user, django_user_model):
    user = django_user_model.objects.create_user("robot-8")
    assert admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": user.pk, "_save": "Save"}).status_code == 302
    key = Token.objects.get(user=user).key
    assert admin_client.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Token.objects.filter(user=user).exists()
    call_command("drf_create_token", "robot-8", stdout=open("/dev/null", "w"))

    created, revoked, by_command = Event.objects.filter(kind__startswith="token.").order_by("seq")
    admin = {"user": admin_user.username, "via": "session", "ip": "127.0.0.1"}
    assert (created.kind, created.actor, created.data) == ("token.created", admin, {"user": "robot-8", "fingerprint": token_fingerprint(key)})
    assert (revoked.kind, revoked.actor, revoked.data["fingerprint"]) == ("token.revoked", admin, token_fingerprint(key))
    assert (by_command.kind, by_command.actor["via"], by_command.client) == ("token.created", "command", {"command": "drf_create_token"})
    assert key not in str(list(Event.objects.values_list("data", flat=True))), "never the key itself"
