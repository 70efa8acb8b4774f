"""Access control: token or trusted network for the API, staff login for the admin, callback URL guard."""
import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from instances.models import Callback, Instance
from smartsocket_site.access import callback_url_allowed
from smartsocket_site.settings import env_networks

pytestmark = pytest.mark.django_db
OUTSIDE = "192.0.2.10"  # TEST-NET-1: never a loopback or default-trusted address
API_CALLS = [
    ("post", "/api/instance"), ("get", "/api/instance/abc"), ("put", "/api/instance/abc"),
    ("delete", "/api/instance/abc"), ("get", "/api/wait?duration=1"), ("post", "/api/emergency-stop"),
    ("put", "/api/recover"), ("get", "/api/server/status"), ("get", "/api/download"),
    ("post", "/api/start-wait-stop"), ("get", "/api/sockets"), ("get", "/api/sockets/default"),
    ("get", "/api/sockets/default/power-periods"), ("get", "/api/sockets/default/samples"),
]


@pytest.fixture
def outsider() -> APIClient:
    return APIClient(REMOTE_ADDR=OUTSIDE)


@pytest.fixture
def token() -> Token:
    return Token.objects.create(user=User.objects.create_user("lab-engine", password="pw-lab-engine"))


@pytest.mark.parametrize(("method", "url"), API_CALLS)
def test_an_outside_caller_without_token_gets_a_json_401_everywhere(outsider, socket, plug, method, url):
    response = getattr(outsider, method)(url)
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_authenticated" and response.json()["message"]
    assert response["WWW-Authenticate"] == "Token"
    assert not Instance.objects.exists() and not plug.commands  # nothing ran


def test_an_outside_caller_with_a_token_starts_and_stops_like_a_local_one(outsider, socket, plug, token):
    outsider.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    started = outsider.post("/api/instance", {"emergencyStopTimeout": "60000"})
    assert started.status_code == 200 and started.json()["triggeredPowerOn"] is True and plug.is_on
    stopped = outsider.put("/api/instance/:instanceId", {"instanceId": started.json()["instance"]["id"]})
    assert stopped.status_code == 200 and stopped.json()["triggeredPowerOff"] is True and not plug.is_on


@pytest.mark.parametrize("header", ["Token not-a-real-key", "Token ", "Token a b"])
def test_a_wrong_token_is_refused_even_where_it_is_not_needed(api, socket, plug, header):
    response = api.post("/api/instance", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"
    assert not Instance.objects.exists() and not plug.is_on


def test_another_authorization_scheme_is_ignored_so_loopback_stays_trusted(api, socket, plug):
    assert api.post("/api/instance", HTTP_AUTHORIZATION="Bearer abc").status_code == 200 and plug.is_on


def test_the_token_of_a_deactivated_user_stops_working(outsider, socket, token):
    outsider.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert outsider.get("/api/server/status").status_code == 200
    User.objects.filter(pk=token.user_id).update(is_active=False)
    response = outsider.get("/api/server/status")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_callers_need_no_token_by_default(socket, plug, address):
    response = APIClient(REMOTE_ADDR=address).post("/api/instance")
    assert response.status_code == 200 and plug.is_on


def test_configured_trusted_networks_replace_the_loopback_default(settings, socket, plug, outsider, api):
    settings.SMARTSOCKET_TRUSTED_NETWORKS = ["192.0.2.0/28", "2001:db8::/32"]
    assert outsider.post("/api/instance").status_code == 200
    assert APIClient(REMOTE_ADDR="2001:db8::7").get("/api/server/status").status_code == 200
    assert APIClient(REMOTE_ADDR="192.0.2.16").get("/api/server/status").status_code == 401  # just outside /28
    assert api.get("/api/server/status").status_code == 401  # loopback no longer listed


def test_forwarded_headers_do_not_make_a_caller_trusted(outsider, socket):
    response = outsider.get("/api/server/status", HTTP_X_FORWARDED_FOR="127.0.0.1", HTTP_X_REAL_IP="127.0.0.1")
    assert response.status_code == 401


def test_a_staff_session_may_use_the_api_from_anywhere(outsider, socket):
    outsider.force_login(User.objects.create_user("operator", password="pw", is_staff=True))
    assert outsider.get("/api/server/status").status_code == 200


def test_schema_and_docs_stay_public(outsider):
    assert outsider.get("/api/schema").status_code == 200
    assert outsider.get("/api/docs").status_code == 200


@pytest.mark.parametrize(("value", "networks"), [("", ["127.0.0.0/8", "::1/128"]), ("none", []), ("10.1.0.0/16, 10.2.3.4", ["10.1.0.0/16", "10.2.3.4"])])
def test_trusted_networks_come_from_the_environment(monkeypatch, value, networks):
    monkeypatch.setenv("SMARTSOCKET_TRUSTED_NETWORKS", value)
    assert env_networks("SMARTSOCKET_TRUSTED_NETWORKS", ["127.0.0.0/8", "::1/128"]) == networks


def test_a_malformed_network_is_a_configuration_error(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("SMARTSOCKET_TRUSTED_NETWORKS", "10.0.0.0/8,lab-net")
    with pytest.raises(ImproperlyConfigured, match="lab-net"):
        env_networks("SMARTSOCKET_TRUSTED_NETWORKS", [])


# -- the admin -------------------------------------------------------------------------------


def test_the_admin_requires_a_staff_login(client):
    assert client.get("/admin/").status_code == 302 and "/admin/login/" in client.get("/admin/")["Location"]
    User.objects.create_user("visitor", password="pw-visitor")
    refused = client.post("/admin/login/?next=/admin/", {"username": "visitor", "password": "pw-visitor"})
    assert refused.status_code == 200 and "staff account" in refused.content.decode()
    assert client.get("/admin/").status_code == 302
    User.objects.create_user("operator", password="pw-operator", is_staff=True)
    assert client.post("/admin/login/?next=/admin/", {"username": "operator", "password": "pw-operator"}).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_tokens_are_created_in_the_admin_and_then_open_the_api(client, outsider, socket):
    client.force_login(User.objects.create_superuser("root", password="pw-root"))
    engine = User.objects.create_user("cpee-lab-2")
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 200
    created = client.post("/admin/authtoken/tokenproxy/add/", {"user": engine.pk})
    assert created.status_code == 302, created.content.decode()[:2000]
    key = Token.objects.get(user=engine).key
    assert outsider.get("/api/server/status", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


# -- callback URLs (SSRF guard) --------------------------------------------------------------


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://127.0.0.1:8080/callbacks/0123/", True),
    ("https://localhost/cb", True),
    ("http://[::1]:9000/cb", True),
    ("http://10.0.0.5/cb", False),
    ("http://169.254.169.254/latest/meta-data/", False),
    ("http://192.168.1.1/", False),
    ("https://cpee.example.org/flow/engine/1/callbacks/abc/", False),
    ("http://2130706433/", False),  # 127.0.0.1 as a number: a name, not listed
    ("http://localhost.evil.example/", False),
    ("http://evil.example\\@127.0.0.1/", False),
    ("http://127.0.0.1 @evil.example/", False),
    ("http://127.0.0.1:99999/", False),
    ("ftp://127.0.0.1/", False),
    ("http://127.0.0.1/" + "a" * 1000, False),
])
def test_callback_urls_default_to_loopback_only(url, allowed):
    assert callback_url_allowed(url) is allowed


def test_allowed_callback_hosts_and_networks_are_configurable(settings):
    settings.SMARTSOCKET_CALLBACK_ALLOWED_HOSTS = ["cpee.org", ".lab.example"]
    settings.SMARTSOCKET_CALLBACK_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert callback_url_allowed("https://cpee.org/flow/engine/1/callbacks/ab/")
    assert callback_url_allowed("https://engine.lab.example/cb") and not callback_url_allowed("https://lab.example.evil/cb")
    assert not callback_url_allowed("https://evilcpee.org/cb")
    assert callback_url_allowed("http://10.20.3.4:9/cb") and not callback_url_allowed("http://127.0.0.1/cb")


def test_wait_refuses_a_callback_to_a_foreign_host_with_422(api, socket):
    response = api.get("/api/wait", {"duration": "1"}, HTTP_CPEE_CALLBACK="http://169.254.169.254/latest/")
    assert response.status_code == 422 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "invalid_parameter" and "CPEE-CALLBACK" in response.json()["message"]
    assert not Callback.objects.exists()


def test_start_wait_stop_refuses_a_foreign_callback_before_starting_anything(api, socket, plug):
    response = api.post("/api/start-wait-stop", {"duration": "5"}, HTTP_CPEE_CALLBACK="http://10.0.0.5/callbacks/1/")
    assert response.status_code == 422 and response.json()["code"] == "invalid_parameter"
    assert not Instance.objects.exists() and not Callback.objects.exists() and not plug.is_on and not plug.commands


def test_an_allowed_callback_host_is_accepted(api, socket, settings):
    settings.SMARTSOCKET_CALLBACK_ALLOWED_HOSTS = ["cpee.org"]
    response = api.get("/api/wait", {"duration": "1"}, HTTP_CPEE_CALLBACK="https://cpee.org/flow/engine/1/callbacks/ab/")
    assert response.status_code == 200 and response["CPEE-CALLBACK"] == "true"
    assert Callback.objects.get().url == "https://cpee.org/flow/engine/1/callbacks/ab/"
