"""Routes. Every API route answers with and without a trailing slash, never redirecting (CPEE)."""
from django.conf import settings
from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from audit.api import EventViewSet
from instances import dashboard
from instances.api.push import ShellyPushView
from instances.api.views import InstanceViewSet, ServerViewSet
from sockets.api.views import SocketViewSet

handler400 = "smartsocket_site.api.json_bad_request"
handler403 = "smartsocket_site.api.json_forbidden"
handler404 = "smartsocket_site.api.json_not_found"
handler500 = "smartsocket_site.api.json_server_error"

INSTANCE = {"get": "retrieve", "put": "update", "delete": "destroy"}


def api(route: str, view, name: str) -> list:
    """`/api/<route>` and `/api/<route>/`, the same view."""
    return [path(f"api/{route}", view, name=name), path(f"api/{route}/", view)]


urlpatterns = [
    path("", TemplateView.as_view(template_name="index.html", extra_context={"version": settings.SPECTACULAR_SETTINGS["VERSION"]}), name="index"),
    path("admin/", admin.site.urls),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/state", dashboard.dashboard_state, name="dashboard-state"),
    path("dashboard/sockets/<slug:name>/emergency-stop", dashboard.dashboard_emergency_stop, name="dashboard-emergency-stop"),
    path("dashboard/sockets/<slug:name>/recover", dashboard.dashboard_recover, name="dashboard-recover"),
    *api("instance", InstanceViewSet.as_view({"post": "create", **INSTANCE}), "instance"),
    *api("instance/<str:pk>", InstanceViewSet.as_view(INSTANCE), "instance-detail"),
    *api("instance/<str:pk>/renew", InstanceViewSet.as_view({"put": "renew"}), "instance-renew"),
    *api("wait", ServerViewSet.as_view({"get": "wait"}), "wait"),
    *api("emergency-stop", ServerViewSet.as_view({"post": "emergency_stop"}), "emergency-stop"),
    *api("emergency-stop/<str:pk>", ServerViewSet.as_view({"post": "emergency_stop"}), "emergency-stop-instance"),
    *api("recover", ServerViewSet.as_view({"put": "recover"}), "recover"),
    *api("server/status", ServerViewSet.as_view({"get": "status"}), "server-status"),
    *api("download", ServerViewSet.as_view({"get": "download"}), "download"),
    *api("start-wait-stop", ServerViewSet.as_view({"post": "start_wait_stop"}), "start-wait-stop"),
    *api("push/shelly/<str:secret>", ShellyPushView.as_view(), "push-shelly"),
    *api("sockets", SocketViewSet.as_view({"get": "list"}), "socket-list"),
    *api("sockets/<slug:name>", SocketViewSet.as_view({"get": "retrieve"}), "socket-detail"),
    *api("sockets/<slug:name>/power-periods", SocketViewSet.as_view({"get": "power_periods"}), "socket-power-periods"),
    *api("sockets/<slug:name>/samples", SocketViewSet.as_view({"get": "samples"}), "socket-samples"),
    *api("sockets/<slug:name>/rollups", SocketViewSet.as_view({"get": "rollups"}), "socket-rollups"),
    *api("events", EventViewSet.as_view({"get": "list"}), "event-list"),
    *api("events/verify", EventViewSet.as_view({"get": "verify"}), "event-verify"),
    *api("events/public-key", EventViewSet.as_view({"get": "public_key"}), "event-public-key"),
    *api("schema", SpectacularAPIView.as_view(), "schema"),
    *api("docs", SpectacularSwaggerView.as_view(url_name="schema"), "docs"),
    *api("redoc", SpectacularRedocView.as_view(url_name="schema"), "redoc"),
]
