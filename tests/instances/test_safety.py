"""DESIGN §6, in-process: each defect of the safety issue reproduced, then shown fixed.

The plug is OFF whenever nobody holds it: a failure after a relay command leaves the
socket UNKNOWN for reconcile (never a <manual> period), a plug switched ON while it must be
OFF is switched OFF again, and bad input never answers 500.
"""
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import DatabaseError
from django.utils import timezone

from audit.ledger import ledger_verify
from audit.models import Event, EventKind
from instances.models import Callback, Instance
from instances.services import socket_watch_many
from instances.tasks import monitor_socket, watch_sockets
from sockets.models import PowerPeriod, PowerState, Socket
from sockets.services import socket_reconcile_backoff
from sockets.tasks import reconcile_socket

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def start(api, **args) -> dict:
    response = api.post("/api/instance", args)
    assert response.status_code == 200, response.content
    return response.json()


def watch(socket: Socket) -> str | None:
    """The must-be-OFF watch of this socket alone: the RelayChange acted on, None when nothing was (OFF, not due)."""
    return socket_watch_many(socket_ids=[socket.pk]).get(socket.pk)


def watch_now(socket: Socket) -> str | None:
    Socket.objects.filter(pk=socket.pk).update(watch_next_at=None)
    return watch(socket)


# 1. A value that does not fit its column is cut before any device command.

def test_a_cpee_label_longer_than_its_column_is_cut_and_the_start_succeeds(api, socket, plug):
    response = api.post("/api/instance", HTTP_CPEE_LABEL="x" * 400, HTTP_CPEE_ACTIVITY="a\x00" * 40)
    assert response.status_code == 200, response.content
    instance = Instance.objects.get()
    assert instance.client_label == "x" * 255 and response.json()["instance"]["label"] == "x" * 255
    assert instance.client_activity == "a" * 40, "NUL removed: PostgreSQL cannot store it"
    assert plug.is_on and PowerPeriod.objects.get().is_open
    started = Event.objects.get(kind=EventKind.INSTANCE_START)
    assert started.client["activity"] == "a" * 40 and ledger_verify().valid, "the ledger keeps the header, NUL removed"


# 2. Whatever raises after the relay command leaves desired right and observed UNKNOWN.

@pytest.fixture
def fail_after_the_relay_command(monkeypatch):
    """Saving the new instance fails (as the over-long label did on PostgreSQL) — after the plug was switched ON."""
    def broken_save(self, *args, **kwargs):
        raise DatabaseError("injected: value too long for type character varying(255)")

    monkeypatch.setattr(Instance, "save", broken_save)


def test_a_failure_after_the_relay_command_is_left_to_reconcile_not_taken_for_a_hand(api, socket, plug, fail_after_the_relay_command):
    with pytest.raises(DatabaseError):  # the test client re-raises what the handler answered as a JSON 500
        api.post("/api/instance")
    assert plug.is_on, "the relay had been switched ON"
    assert not Instance.objects.exists() and not PowerPeriod.objects.exists(), "nothing half-written"
    socket.refresh_from_db()
    assert (socket.desired_power, socket.observed_power) == (PowerState.OFF, PowerState.UNKNOWN)
    assert "after a relay command" in socket.last_error

    assert watch_now(socket) == "unheld_off", "the must-be-OFF watch switches it OFF, not as a hand's ON"
    assert not plug.is_on and not PowerPeriod.objects.exists()
    socket.refresh_from_db()
    assert (socket.desired_power, socket.observed_power) == (PowerState.OFF, PowerState.OFF)


def test_reconcile_alone_also_settles_a_failed_start_without_a_manual_period(api, socket, plug, fail_after_the_relay_command):
    with pytest.raises(DatabaseError):
        api.post("/api/instance")
    assert reconcile_socket(socket.pk) == "switched"
    assert not plug.is_on and not PowerPeriod.objects.exists()


def test_the_answer_to_a_failure_after_the_relay_command_is_a_json_500(socket, plug, fail_after_the_relay_command):
    from rest_framework.test import APIClient

    response = APIClient(raise_request_exception=False).post("/api/instance")
    assert response.status_code == 500 and response.json()["code"] == "server_error"


def test_a_failure_nested_in_start_wait_stop_is_recorded_too(api, socket, plug, monkeypatch):
    """The recorder works wherever it is nested: here the start succeeds, then storing its planned stop fails."""
    def broken_create(*args, **kwargs):
        raise DatabaseError("injected")

    monkeypatch.setattr(Callback.objects, "create", broken_create)
    with pytest.raises(DatabaseError):
        api.post("/api/start-wait-stop", {"duration": 5})
    assert plug.is_on and not Instance.objects.exists()
    assert Socket.objects.get(pk=socket.pk).observed_power == PowerState.UNKNOWN
    assert watch_now(socket) == "unheld_off" and not plug.is_on


# 4. A start-wait-stop device fault is recorded on the socket like any start's.

@pytest.mark.parametrize("fault", ["http500", "wrong_state"])
def test_a_start_wait_stop_device_fault_is_recorded_on_the_socket(api, socket, plug, fault, fast_device_timeouts):
    plug.set_fault(fault, only="Power On")
    response = api.post("/api/start-wait-stop", {"duration": 5})
    assert response.status_code in (409, 500) and response.json()["code"] in ("socket_device_error", "socket_power_failed")
    socket.refresh_from_db()
    assert socket.observed_power == PowerState.UNKNOWN and socket.last_error
    assert not Instance.objects.exists() and not Callback.objects.exists()


# 3. Must-be-OFF plugs are watched: a relay found ON is switched OFF again and recorded.

def test_a_plug_switched_on_by_hand_while_nobody_holds_it_is_switched_off_and_recorded(api, socket, plug):
    start(api)["instance"]["id"]
    api.put(f"/api/instance/{Instance.objects.get().pk}")
    plug.press_button()
    assert watch_now(socket) == "manual_on"
    assert not plug.is_on
    period = PowerPeriod.objects.order_by("-power_on_at").first()
    assert (period.power_on_by, period.power_off_by, period.power_off_cause) == ("<manual>", "<unheld>", "unheld")
    assert plug.commands[-2:] == ["Power", "Power Off"], "a cheap relay query, then the switch"
    assert watch_now(socket) is None, "OFF now: nothing to do"


def test_the_watch_checks_only_sockets_that_must_be_off(api, socket, plug, eager_tasks):
    start(api)
    commands = len(plug.commands)
    assert watch_sockets() == 0 and len(plug.commands) == commands, "held: not watched"
    api.post("/api/emergency-stop")
    assert watch_sockets() == 1, "emergency-locked: watched"
    plug.press_button()
    assert watch_now(socket) == "manual_on" and not plug.is_on
    assert PowerPeriod.objects.order_by("-power_on_at").first().power_off_by == "<emergency>"


def test_the_watch_is_claimed_once_per_interval(socket, plug, settings):
    settings.SMARTSOCKET_OFF_WATCH_INTERVAL = 4.0  # room for a slow machine between the two checks
    claimed_at = timezone.now()
    assert watch_now(socket) is None
    socket.refresh_from_db()
    half = timedelta(seconds=2)
    assert claimed_at + half <= socket.watch_next_at <= timezone.now() + half, "due half an interval after its claim: the next tick brings it again"
    plug.press_button()
    assert watch(socket) is None and plug.is_on, "not due again yet"


def test_reconcile_of_a_must_be_off_socket_backs_off_at_most_two_seconds(socket):
    socket.desired_power = PowerState.OFF
    assert [socket_reconcile_backoff(socket=socket, attempts=n) for n in (1, 2, 3, 10)] == [1, 2, 2, 2]
    socket.desired_power = PowerState.ON
    assert socket_reconcile_backoff(socket=socket, attempts=10) == 60


# 5. Bad input that answered 500.

BODY_ROUTES = [("POST", "/api/instance"), ("PUT", "/api/instance/:instanceId"), ("DELETE", "/api/instance/:instanceId"),
               ("PUT", "/api/instance/:instanceId/renew"), ("POST", "/api/emergency-stop"), ("PUT", "/api/recover"),
               ("POST", "/api/start-wait-stop"), ("GET", "/api/wait"), ("GET", "/api/instance"), ("GET", "/api/server/status"),
               ("GET", "/api/download")]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_deeply_nested_json_is_a_json_400(api, socket, plug, method, path):
    body = "[" * 100_000 + "]" * 100_000
    response = api.generic(method, path, body, content_type="application/json")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "parse_error" and "nested" in response.json()["message"]
    assert not plug.is_on and not Instance.objects.exists()


@pytest.mark.parametrize(("method", "path"), [("get", "/api/instance/a%00b"), ("put", "/api/instance/a%00b"),
                                              ("delete", "/api/instance/%00"), ("put", "/api/instance/a%00/renew"),
                                              ("post", "/api/emergency-stop/a%00b")])
def test_a_nul_byte_in_an_instance_id_is_not_found(api, socket, method, path):
    response = getattr(api, method)(path)
    assert response.status_code == 404 and response.json()["code"] == "instance_not_found"


# 6. `timeout`, the original's name, is an alias of emergencyStopTimeout.

def test_timeout_is_an_alias_of_emergency_stop_timeout(api, socket, plug):
    instance = start(api, timeout=4000)["instance"]
    assert instance["emergencyStopTimeout"] == 4000 and instance["deadline"]
    assert start(api, timeout=4000, emergencyStopTimeout=4000)["instance"]["emergencyStopTimeout"] == 4000
    response = api.post("/api/instance", {"timeout": 4000, "emergencyStopTimeout": 5000})
    assert response.status_code == 422 and "timeout" in response.json()["fields"]
    renewed = api.put(f"/api/instance/{instance['id']}/renew", {"timeout": 60000}).json()["instance"]
    assert renewed["emergencyStopTimeout"] == 60000
    assert api.post("/api/start-wait-stop", {"duration": 5, "timeout": 0}).status_code == 422
    assert Instance.objects.count() == 2


# 7. Smaller ones.

def test_a_hand_on_not_seen_yet_is_taken_for_the_first_starts_own_on(api, socket, plug):
    """The price of a one-round-trip start: a relay confirmed OFF within the OFF sample interval is switched ON
    without reading it first, so a press since is not told apart (the relay is ON either way, DESIGN §3.1)."""
    monitor_socket(socket.pk)
    plug.press_button()
    before = len(plug.commands)
    answer = start(api)
    assert sorted(plug.commands[before:]) == ["Power On", "PulseTime 0", "Status 10"]
    assert answer["triggeredPowerOn"] is True and plug.is_on
    assert PowerPeriod.objects.get().power_on_by == answer["instance"]["id"]
    assert api.put(f"/api/instance/{answer['instance']['id']}").json()["triggeredPowerOff"] is True and not plug.is_on


def test_a_start_on_a_plug_found_on_in_an_unknown_state_keeps_it_on_as_unknown(api, socket, plug):
    plug.press_button()  # the socket was never seen: its relay state is UNKNOWN
    assert start(api)["triggeredPowerOn"] is False
    assert PowerPeriod.objects.get().power_on_by == "<unknown>", "not claimed to be a hand's"


def test_callback_urls_are_case_insensitive_in_their_scheme_and_other_schemes_are_refused(api, socket):
    response = api.get("/api/wait", {"duration": 1}, HTTP_CPEE_CALLBACK="HTTP://127.0.0.1:9/cb")
    assert response.status_code == 200 and response["CPEE-CALLBACK"] == "true"
    assert Callback.objects.get().url == "HTTP://127.0.0.1:9/cb"
    response = api.get("/api/wait", {"duration": 1}, HTTP_CPEE_CALLBACK="ftp://127.0.0.1/cb")
    assert response.status_code == 422 and Callback.objects.count() == 1
    assert api.get("/api/wait", {"duration": 1}, HTTP_X_CALLBACK="true").status_code == 200, "not a URL: not a callback"


def test_at_most_eight_callbacks_per_request(api, socket, plug):
    headers = {f"HTTP_C{n}_CALLBACK": f"http://127.0.0.1:9/{n}" for n in range(9)}
    response = api.get("/api/wait", {"duration": 1}, **headers)
    assert response.status_code == 422 and response.json()["limit"] == 8
    response = api.post("/api/start-wait-stop", {"duration": 1}, **headers)
    assert response.status_code == 422 and not plug.is_on
    assert not Callback.objects.exists() and not Instance.objects.exists(), "nothing stored"
    headers.pop("HTTP_C8_CALLBACK")
    response = api.get("/api/wait", {"duration": 1}, **headers)
    assert response.status_code == 200 and Callback.objects.count() == 8


def test_the_schema_says_a_start_answers_200(api):
    schema = api.get("/api/schema", HTTP_ACCEPT="application/json").json()
    responses = schema["paths"]["/api/instance"]["post"]["responses"]
    assert "200" in responses and "201" not in responses
    parameters = json.dumps(schema["components"]["schemas"])
    assert "Alias of emergencyStopTimeout" in parameters


# Deliver 1: one stop path, one power-period writer.

def test_power_periods_are_opened_and_closed_in_one_place_only():
    sources = {path: path.read_text() for folder in ("sockets", "instances") for path in (ROOT / folder).rglob("*.py")
               if "migrations" not in path.parts}
    creating = [path.name for path, text in sources.items() if "PowerPeriod.objects.create" in text]
    closing = [path.name for path, text in sources.items() if "period.power_off_at =" in text]
    assert creating == ["power.py"] and closing == ["power.py"]
    stopping = [path.name for path, text in sources.items() if "stopped_at, instance.stop_reason =" in text]
    assert stopping == ["holders.py"], "every way an instance ends goes through instances_stop"
