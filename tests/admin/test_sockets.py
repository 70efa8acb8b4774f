"""Sockets are edited in the admin without ever showing the password; emergency stop and recover use the API's services."""
import pytest

from instances.models import StopReason
from instances.services import instance_start
from sockets.models import PowerPeriod, Socket
from sockets.services import socket_create

pytestmark = pytest.mark.django_db

SECRET = "s3cret-Pa55"


def form(socket: Socket, **changes) -> dict:
    data = {"name": socket.name, "driver": socket.driver, "address": socket.address, "username": socket.username, "password": "", "_save": "Save"}
    return {**data, **changes}


def test_a_socket_is_added_with_its_credentials(admin_client):
    response = admin_client.post("/admin/sockets/socket/add/", {
        "name": "pump", "driver": "tasmota_http", "address": "http://192.0.2.7", "username": "admin", "password": SECRET, "_save": "Save",
    })

    assert response.status_code == 302
    socket = Socket.objects.get(name="pump")
    assert (socket.address, socket.username, socket.password) == ("http://192.0.2.7", "admin", SECRET)


def test_the_stored_password_is_never_shown_and_blank_keeps_it(admin_client):
    socket = socket_create(name="pump", address="http://192.0.2.7", username="admin", password=SECRET)

    page = admin_client.get(f"/admin/sockets/socket/{socket.pk}/change/").content.decode()
    saved = admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, address="http://192.0.2.8"))

    assert SECRET not in page and 'type="password"' in page
    assert saved.status_code == 302
    socket.refresh_from_db()
    assert (socket.address, socket.password) == ("http://192.0.2.8", SECRET)


def test_a_new_password_replaces_the_old_and_clear_removes_it(admin_client):
    socket = socket_create(name="pump", address="http://192.0.2.7", password=SECRET)

    admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, password="n3w"))
    socket.refresh_from_db()
    assert socket.password == "n3w"

    admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, clear_password="on"))
    socket.refresh_from_db()
    assert socket.password == ""


def test_saving_the_form_never_undoes_a_concurrent_emergency_stop(admin_client):
    socket = socket_create(name="pump", address="http://192.0.2.7")
    admin_client.get(f"/admin/sockets/socket/{socket.pk}/change/")
    Socket.objects.filter(pk=socket.pk).update(is_emergency_stopped=True, emergency_stopped_by="someone", observed_power="OFF")

    admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, name="pump-2"))

    socket.refresh_from_db()
    assert (socket.name, socket.is_emergency_stopped, socket.emergency_stopped_by, socket.observed_power) == ("pump-2", True, "someone", "OFF")


def test_an_unknown_driver_is_refused(admin_client):
    socket = socket_create(name="pump", address="http://192.0.2.7")

    response = admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, driver="mqtt-nope"))

    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    socket.refresh_from_db()
    assert socket.driver == "tasmota_http"


def run_action(client, action: str, socket: Socket) -> list[str]:
    response = client.post("/admin/sockets/socket/", {"action": action, "_selected_action": [socket.pk]}, follow=True)
    assert response.redirect_chain == [("/admin/sockets/socket/", 302)] and response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_emergency_stop_stops_every_instance_powers_off_and_locks(admin_client, admin_user, socket, plug):
    first = instance_start(socket=socket).instance
    second = instance_start(socket=socket).instance
    assert plug.is_on

    messages = run_action(admin_client, "emergency_stop_selected", socket)

    assert messages == [f"default: emergency-stopped and locked; instances stopped: {first.pk}, {second.pk}"]
    assert not plug.is_on
    socket.refresh_from_db()
    assert socket.is_emergency_stopped and socket.emergency_stopped_by == f"<admin:{admin_user.username}>"
    first.refresh_from_db()
    assert first.stop_reason == StopReason.EMERGENCY and first.stopped_at is not None
    period = PowerPeriod.objects.get(socket=socket)
    assert (period.power_off_by, period.power_off_cause) == ("<emergency>", "emergency")

    assert run_action(admin_client, "recover_selected", socket) == ["default: recovered, instances may start again"]
    socket.refresh_from_db()
    assert not socket.is_emergency_stopped
    assert instance_start(socket=socket).triggered_power_on


def test_emergency_stop_reports_a_device_fault_instead_of_crashing(admin_client, socket, plug, fast_device_timeouts):
    instance = instance_start(socket=socket).instance
    plug.set_fault("timeout")

    messages = run_action(admin_client, "emergency_stop_selected", socket)

    assert len(messages) == 1 and "emergency stop recorded and locked, but the device did not confirm OFF" in messages[0]
    socket.refresh_from_db()
    assert socket.is_emergency_stopped
    instance.refresh_from_db()
    assert instance.stop_reason == StopReason.EMERGENCY


def test_a_view_only_user_cannot_emergency_stop(client, django_user_model, socket):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_socket"))
    client.force_login(user)

    page = client.get("/admin/sockets/socket/").content.decode()
    client.post("/admin/sockets/socket/", {"action": "emergency_stop_selected", "_selected_action": [socket.pk]})

    assert "emergency_stop_selected" not in page
    socket.refresh_from_db()
    assert not socket.is_emergency_stopped


def test_sample_intervals_are_set_per_socket_and_empty_means_the_default(admin_client):
    socket = socket_create(name="pump", address="http://192.0.2.7")

    admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, sample_interval_on="2.5", sample_interval_off=""))
    socket.refresh_from_db()
    assert (socket.sample_interval_on, socket.sample_interval_off) == (2.5, None)

    refused = admin_client.post(f"/admin/sockets/socket/{socket.pk}/change/", form(socket, sample_interval_on="0.01"))
    assert refused.status_code == 200 and "greater than or equal to 0.5" in refused.content.decode()
    socket.refresh_from_db()
    assert socket.sample_interval_on == 2.5
