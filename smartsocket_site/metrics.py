"""Prometheus metrics (prometheus-client): state read from the database at scrape time, so every
web worker answers the same; request latency from each gunicorn worker, merged through
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) when it is set."""
import os
import time

from django.db.models import Count, Max, Q
from django.utils import timezone
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REQUEST_LATENCY = Histogram(
    "smartsocket_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class DatabaseCollector:
    """Per-socket gauges and the counters kept in the database (instances, callbacks, EventCounter rows)."""

    def collect(self):
        from instances.models import Callback, Instance
        from sockets.models import EnergySample, PowerState, Socket

        from .models import EventCounter

        now = timezone.now()
        gauges = {
            "power_watts": GaugeMetricFamily("smartsocket_socket_power_watts", "Power at the latest sample.", labels=["socket"]),
            "relay": GaugeMetricFamily("smartsocket_socket_relay_on", "Relay as last confirmed: 1 ON, 0 OFF, -1 unknown.", labels=["socket"]),
            "online": GaugeMetricFamily("smartsocket_socket_online", "1 when the device answered its last request.", labels=["socket"]),
            "holders": GaugeMetricFamily("smartsocket_socket_running_holders", "Running instances.", labels=["socket"]),
            "age": GaugeMetricFamily("smartsocket_socket_last_sample_age_seconds", "Age of the latest sample.", labels=["socket"]),
            "failsafe": GaugeMetricFamily("smartsocket_socket_failsafe_armed", "1 while the plug's own off-timer is armed.", labels=["socket"]),
            "locked": GaugeMetricFamily("smartsocket_socket_emergency_stopped", "1 while emergency-locked.", labels=["socket"]),
        }
        sockets = Socket.objects.annotate(holders=Count("instances", filter=Q(instances__stopped_at=None))).order_by("name")
        latest = {s["socket"]: s for s in EnergySample.objects.values("socket").annotate(at=Max("taken_at"))}
        for socket in sockets:
            name = [socket.name]
            sample = EnergySample.objects.filter(socket=socket, taken_at=latest[socket.pk]["at"]).first() if socket.pk in latest else None
            if sample is not None:
                gauges["power_watts"].add_metric(name, sample.power_w)
                gauges["age"].add_metric(name, (now - sample.taken_at).total_seconds())
            gauges["relay"].add_metric(name, {PowerState.ON: 1, PowerState.OFF: 0}.get(socket.observed_power, -1))
            gauges["online"].add_metric(name, int(socket.is_online))
            gauges["holders"].add_metric(name, socket.holders)
            gauges["failsafe"].add_metric(name, int(socket.failsafe_expires_at is not None))
            gauges["locked"].add_metric(name, int(socket.is_emergency_stopped))
        yield from gauges.values()

        starts = CounterMetricFamily("smartsocket_instance_starts", "Instances started.", labels=["socket"])
        for row in Instance.objects.values("socket__name").annotate(n=Count("pk")).order_by():
            starts.add_metric([row["socket__name"]], row["n"])
        yield starts
        stops = CounterMetricFamily("smartsocket_instance_stops", "Instances stopped, by reason.", labels=["socket", "reason"])
        for row in Instance.objects.exclude(stopped_at=None).values("socket__name", "stop_reason").annotate(n=Count("pk")).order_by():
            stops.add_metric([row["socket__name"], row["stop_reason"]], row["n"])
        yield stops
        callbacks = CounterMetricFamily("smartsocket_callbacks", "Callbacks by outcome (delivered, failed).", labels=["outcome"])
        callbacks.add_metric(["delivered"], Callback.objects.exclude(delivered_at=None).count())
        callbacks.add_metric(["failed"], Callback.objects.exclude(failed_at=None).count())
        yield callbacks
        families = {
            "device_errors": CounterMetricFamily("smartsocket_device_errors", "Device faults, by kind.", labels=["kind"]),
            "reconcile_attempts": CounterMetricFamily("smartsocket_reconcile_attempts", "Reconcile attempts, by result.", labels=["result"]),
        }
        for counter in EventCounter.objects.filter(name__in=families).order_by("name", "label"):
            families[counter.name].add_metric([counter.label], counter.value)
        yield from families.values()


def metrics_text() -> bytes:
    """The Prometheus text exposition of everything above."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_LATENCY)
    registry.register(DatabaseCollector())
    return generate_latest(registry)


class RequestLatencyMiddleware:
    """Times every request into REQUEST_LATENCY, labelled by route pattern (not path: ids would explode the labels)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        began = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        REQUEST_LATENCY.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - began)
        return response
