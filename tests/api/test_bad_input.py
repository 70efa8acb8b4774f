"""Every kind of bad input answers 4xx with a JSON message: never a 500, never HTML."""
import pytest

from instances.models import Instance
from sockets.models import PowerPeriod

pytestmark = pytest.mark.django_db


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    return body


@pytest.mark.parametrize("timeout", ["abc", "-5", "0", "2.5", "1e30", "99999999999999999999", "true", "[1]"])
def test_start_rejects_bad_emergency_stop_timeouts(api, socket, plug, timeout):
    body = assert_json_error(api.post("/api/instance", {"emergencyStopTimeout": timeout}), 422)
    assert "emergencyStopTimeout" in body["message"] and "emergencyStopTimeout" in body["fields"]
    assert not Instance.objects.exists() and not plug.is_on and plug.commands == []


def test_start_accepts_an_integral_float_and_empty_means_absent(api, socket):
    assert api.post("/api/instance", {"emergencyStopTimeout": "20.0"}).json()["instance"]["emergencyStopTimeout"] == 20
    assert api.post("/api/instance", {"emergencyStopTimeout": ""}).json()["instance"]["emergencyStopTimeout"] is None


@pytest.mark.parametrize("body", ['{"emergencyStopTimeout": ', "[1, 2]", '"text"', "{'single': 'quotes'}"])
def test_malformed_or_non_object_json_is_400(api, socket, plug, body):
    assert_json_error(api.post("/api/instance", body, content_type="application/json"), 400)
    assert not Instance.objects.exists() and not plug.is_on


@pytest.mark.parametrize("name", ["no such", "a/b", "x" * 65, "ünïcode"])
def test_invalid_socket_names_are_422(api, socket, name):
    assert_json_error(api.post("/api/instance", {"socket": name}), 422)


def test_unknown_socket_is_404(api, socket):
    assert_json_error(api.post("/api/instance", {"socket": "missing"}), 404)
    assert_json_error(api.get("/api/server/status?socket=missing"), 404)
    assert_json_error(api.get("/api/download?socket=missing"), 404)


@pytest.mark.parametrize("method,path", [
    ("patch", "/api/instance/abc"), ("post", "/api/instance/abc"), ("get", "/api/recover"), ("post", "/api/wait"),
    ("delete", "/api/server/status"), ("put", "/api/emergency-stop"), ("get", "/api/start-wait-stop"), ("post", "/api/sockets"),
])
def test_wrong_methods_are_405_json(api, socket, method, path):
    assert_json_error(getattr(api, method)(path), 405)


@pytest.mark.parametrize("path", ["/api/nope", "/api/instance/a/b/c", "/nothing-here", "/api/sockets/default/nope"])
def test_unknown_routes_are_404_json_even_with_debug_off(api, socket, settings, path):
    settings.DEBUG = False
    assert_json_error(api.get(path), 404)


def test_unknown_instance_ids_are_404_for_every_verb(api, socket):
    for call in (api.get, api.put, api.delete):
        assert_json_error(call("/api/instance/doesnotexist"), 404)
    assert_json_error(api.put("/api/instance/:instanceId", {"instanceId": "x" * 65}), 422)


@pytest.mark.parametrize("query", ["since=yesterday", "until=2026-13-45", "format=xml"])
def test_download_rejects_bad_filters(api, socket, query):
    assert_json_error(api.get(f"/api/download?{query}"), 422)


def test_absurdly_large_bodies_do_not_break_anything(api, socket, plug):
    response = api.post("/api/instance", {"emergencyStopTimeout": "9" * 5000})
    assert_json_error(response, 422)
    assert not PowerPeriod.objects.exists()


@pytest.mark.parametrize("path", ["/api/bug/plain", "/api/bug/api"])
def test_an_unexpected_error_is_a_json_500_without_details(client, settings, path):
    settings.ROOT_URLCONF = "tests.api.urls_with_failures"
    settings.DEBUG = False
    client.raise_request_exception = False
    response = client.get(path)
    body = assert_json_error(response, 500)
    assert body == {"message": "internal server error", "code": "server_error"}
