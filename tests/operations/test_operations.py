"""Operators' endpoints in-process: /healthz, /readyz, /metrics on any Host, the index page, offline docs."""
import re
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from smartsocket_site.models import Heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_answers_on_any_host_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz", HTTP_HOST="monitoring.internal:9999")
    assert response.status_code == 200 and response.json() == {"status": "alive"}


def test_readyz_names_each_missing_heartbeat_then_is_ready(client):
    response = client.get("/readyz", HTTP_HOST="10.0.0.7")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker", "safety", "beat"] and body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["checks"]["worker"]["error"] == "no heartbeat yet"
    for name in ("worker", "safety", "beat"):
        Heartbeat.objects.create(name=name, beat_at=timezone.now())
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ready"
    Heartbeat.objects.filter(name="safety").update(beat_at=timezone.now() - timezone.timedelta(minutes=5))
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["failing"] == ["safety"]
    assert "last heartbeat 300 s ago" in response.json()["checks"]["safety"]["error"]


def test_operations_routes_refuse_other_methods(client):
    assert client.post("/readyz").status_code == 405 and client.post("/metrics").json()["code"] == "method_not_allowed"


def test_metrics_show_sockets_counters_and_request_latency(api, socket, plug, client):
    instance = api.post("/api/instance", {"emergencyStopTimeout": 60000}).json()["instance"]
    api.put(f"/api/instance/{instance['id']}")
    api.post("/api/instance")
    plug.set_fault("http500")
    api.post("/api/emergency-stop")
    response = client.get("/metrics", HTTP_HOST="prometheus:9090")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for line in ['smartsocket_socket_relay_on{socket="default"} -1.0', 'smartsocket_socket_running_holders{socket="default"} 0.0',
                 'smartsocket_socket_online{socket="default"} 0.0', 'smartsocket_socket_emergency_stopped{socket="default"} 1.0',
                 'smartsocket_instance_starts_total{socket="default"} 2.0',
                 'smartsocket_instance_stops_total{reason="requested",socket="default"} 1.0',
                 'smartsocket_instance_stops_total{reason="emergency",socket="default"} 1.0',
                 'smartsocket_device_errors_total{kind="protocol"} 1.0', 'smartsocket_socket_failsafe_armed{socket="default"} 0.0']:
        assert line in text, line
    assert re.search(r'smartsocket_socket_power_watts\{socket="default"\} [\d.]+', text)
    assert re.search(r'smartsocket_http_request_duration_seconds_count\{method="POST",route="api/instance",status="200"\} [1-9]', text)


def test_the_index_page_links_api_docs_admin_and_health(client):
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    for href in ("/api/docs", "/api/redoc", "/admin/", "/readyz", "/metrics", "/api/server/status"):
        assert f'href="{href}"' in page


class References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.parametrize("page", ["/api/docs", "/api/redoc"])
def test_the_docs_work_offline(client, page, settings, tmp_path):
    """Every script and style the page loads comes from this service, and is there."""
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)
    html = client.get(page).content.decode()
    parser = References()
    parser.feed(html)
    assert parser.urls, "the page loads its assets"
    assert not re.search(r"https?://(?!testserver)", html), "no other host referenced"
    for url in parser.urls:
        if url.startswith("/static/"):
            assert Client().get(url).status_code == 200, url


def test_every_operation_is_documented_with_a_summary_and_its_error_codes(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path}"
            assert "401" in operation["responses"], f"{method} {path}"
    start = schema["paths"]["/api/instance"]["post"]
    assert {"200", "409", "422", "500"} <= set(start["responses"]) and "201" not in start["responses"]
    assert start["responses"]["409"]["content"]["application/json"]["example"]["code"] == "socket_emergency_stopped"
    assert "socket_power_failed" in start["responses"]["409"]["description"]
    assert start["responses"]["200"]["content"]["application/json"]["example"]["triggeredPowerOn"] is True
    assert {"CPEE-LABEL", "CPEE-INSTANCE-URL"} <= {p["name"] for p in start["parameters"] if p["in"] == "header"}
    wait = schema["paths"]["/api/wait"]["get"]
    assert "CPEE-CALLBACK" in {p["name"] for p in wait["parameters"]} and "422" in wait["responses"]


def test_every_operation_has_an_example_answer_and_bodies_an_example_request(client):
    schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"]["200"].get("content", {})
            if "application/json" in content:
                assert "example" in content["application/json"], f"{method} {path}"
            for media, body in (operation.get("requestBody") or {}).get("content", {}).items():
                assert "example" in body, f"{method} {path} {media}"
