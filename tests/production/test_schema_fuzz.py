"""Schema-driven fuzzing (schemathesis) of every API operation in-process: no 5xx, no HTML, JSON errors."""
import os
import re

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from smartsocket_site.wsgi import application


@pytest.fixture
def api_schema(db, socket):
    """The schema the app serves, called in-process; the simulator is the default socket."""
    # As Django's test client does: the WSGI handler must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def token(db) -> str:
    return Token.objects.create(user=User.objects.create_user("fuzzer")).key


schema = schemathesis.pytest.from_fixture("api_schema")


# Not run: negative_data_rejection and positive_data_acceptance. CPEE sends empty arguments for
# absent ones and ids as an argument or in the path (docs clients.md), so which requests are
# acceptable is richer than an OpenAPI schema states; the 422s for bad input are tested in tests/api.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]


@schema.parametrize()
# Random locally to explore; the same examples in CI, so a run there is reproducible.
@hypothesis_settings(max_examples=25, deadline=None, derandomize=os.environ.get("CI") == "true")
def test_every_operation_answers_json_and_never_5xx(case, token):
    response = case.call(headers={"Authorization": f"Token {token}"})
    case.validate_response(response, checks=CHECKS)
    content_type = ",".join(response.headers.get("content-type", []))
    assert "html" not in content_type and response.status_code < 500
    if response.status_code >= 400:
        body = response.json()
        assert content_type == "application/json" and isinstance(body, dict) and body["message"] and body["code"]


@pytest.mark.parametrize("url", ["/api/instance", "/api/instance/abc", "/api/wait", "/api/sockets/default"])
def test_options_is_refused_with_a_json_405(api, socket, url):
    response = api.options(url)
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


def test_the_schema_and_so_the_fuzzing_covers_every_api_route():
    """Every `/api/…` route (but the schema and docs themselves) is an operation of the schema."""
    from django.urls import get_resolver
    from drf_spectacular.generators import SchemaGenerator

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}|<[^>]+>", "{}", "/" + path.rstrip("/"))

    routes = {shape(str(p.pattern)) for p in get_resolver().url_patterns if str(p.pattern).startswith("api/")}
    routes -= {"/api/schema", "/api/docs", "/api/redoc"}
    documented = {shape(path.lstrip("/")) for path in SchemaGenerator().get_schema(request=None, public=True)["paths"]}
    assert routes and documented == routes
