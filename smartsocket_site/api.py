"""The one place where errors become HTTP answers, and request-argument helpers."""
from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import parsers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from instances.exceptions import InstanceIdMissing, InstanceNotFound, InstanceNotRunning
from sockets.exceptions import (
    InvalidParameter,
    SmartSocketError,
    SocketDeviceError,
    SocketEmergencyStopped,
    SocketNotFound,
    SocketPowerFailed,
)

STATUS = {
    InvalidParameter: 422,
    InstanceIdMissing: 422,
    InstanceNotFound: 404,
    InstanceNotRunning: 409,
    SocketNotFound: 404,
    SocketEmergencyStopped: 409,
    SocketPowerFailed: 409,  # the device answered with the wrong state
    SocketDeviceError: 500,  # unreachable or garbled device
}


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a body nested too deeply for Python's parser answered as a parse error, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise drf_exceptions.ParseError("JSON parse error - nested too deeply") from None


def api_exception_handler(exc, context):
    """Map domain errors and DRF errors to JSON `{"message": ..., ...}` answers."""
    if isinstance(exc, SmartSocketError):
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
        return Response({"message": str(exc), "code": exc.code, **exc.data}, status=status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unknown errors stay 500s (handler500 answers JSON)
    if isinstance(exc, drf_exceptions.ValidationError):
        response.status_code = 422  # DESIGN §4: a bad parameter is 422
        response.data = {"message": _first_error(response.data), "code": "invalid_parameter", "fields": response.data}
    elif isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        response.data = {"message": str(detail), "code": getattr(detail, "code", "error")}
    return response


def _first_error(errors) -> str:
    if isinstance(errors, dict):
        for name, value in errors.items():
            return f"{name}: {_first_error(value)}" if name != "non_field_errors" else _first_error(value)
    if isinstance(errors, list) and errors:
        return _first_error(errors[0])
    return str(errors) or "invalid parameters"


def request_params(request: Request) -> dict:
    """Arguments from the query string and a form or JSON body (body wins); empty values count as absent."""
    params = {key: request.query_params.get(key) for key in request.query_params}
    data = request.data
    if hasattr(data, "getlist"):
        params.update({key: data.get(key) for key in data})
    elif isinstance(data, dict):
        params.update(data)
    elif data not in (None, "", [], {}):
        raise drf_exceptions.ParseError("the JSON body must be an object")
    return {key: value for key, value in params.items() if value not in ("", None)}


def json_not_found(request, exception=None):
    return JsonResponse({"message": f"no route for {request.method} {request.path}", "code": "not_found"}, status=404)


def json_server_error(request):
    return JsonResponse({"message": "internal server error", "code": "server_error"}, status=500)


def json_bad_request(request, exception=None):
    return JsonResponse({"message": "bad request", "code": "bad_request"}, status=400)


def json_forbidden(request, exception=None):
    return JsonResponse({"message": "forbidden", "code": "forbidden"}, status=403)


def schema_without_slash_twins(endpoints):
    """drf-spectacular hook: every route also answers with a trailing slash; document it once."""
    return [endpoint for endpoint in endpoints if not endpoint[0].endswith("/")]
