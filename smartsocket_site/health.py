"""/healthz, /readyz and /metrics: answered before any other middleware, so on any Host header
(a container probe or Prometheus rarely sends one that DJANGO_ALLOWED_HOSTS lists)."""


from django.http import HttpResponse, JsonResponse

from .metrics import metrics_text
from .operations import ledger_state, readiness

ROUTES = ("/healthz", "/readyz", "/metrics")


def healthz(request) -> JsonResponse:
    """The process answers; no database, no broker."""
    return JsonResponse({"status": "alive"})


def readyz(request) -> JsonResponse:
    """200 when database, broker, worker, safety worker and beat are all fine; else 503 naming what fails.
    The body also says what the last ledger check found (a break is reported, it does not stop the service)."""
    checks = readiness()
    failing = [name for name, check in checks.items() if not check["ok"]]
    body = {"status": "not ready" if failing else "ready", "failing": failing, "checks": checks}
    if checks["database"]["ok"]:
        body["ledger"] = ledger_state()
    return JsonResponse(body, status=503 if failing else 200, json_dumps_params={"indent": None})


def metrics(request) -> HttpResponse:
    return HttpResponse(metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")


class OperationsMiddleware:
    """Serves ROUTES (GET and HEAD only) ahead of host validation, sessions and authentication."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.views = dict(zip(ROUTES, (healthz, readyz, metrics)))

    def __call__(self, request):
        view = self.views.get(request.path_info.rstrip("/") or "/")
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"message": f"{request.method} not allowed on {request.path_info}", "code": "method_not_allowed"}, status=405)
        return view(request)



