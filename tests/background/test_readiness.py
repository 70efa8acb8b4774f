"""/readyz and /metrics against real processes: heartbeats of worker, safety worker and beat; request
latency merged across gunicorn workers (prometheus-client multiprocess mode)."""
import re
import tempfile

import pytest
import requests

from tests.processes import eventually, free_port, gunicorn, process_env

from .stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_readyz_follows_the_heartbeats_of_each_background_process(socket, simulator):
    with Stack(broker="embedded", plug_url=simulator.url, SMARTSOCKET_HEARTBEAT_INTERVAL="0.5").running() as stack:
        base = stack.api.removesuffix("/api")
        body = eventually(lambda: (r := requests.get(f"{base}/readyz", timeout=5)).status_code == 200 and r.json(), 10, "ready")
        assert body["status"] == "ready" and body["checks"]["beat"]["ageSeconds"] < 3.5
        stack.safety.kill()
        body = eventually(lambda: (r := requests.get(f"{base}/readyz", timeout=5)).status_code == 503 and r.json(), 8, "the dead safety worker shows")
        assert body["failing"] == ["safety"] and "last heartbeat" in body["checks"]["safety"]["error"]


def test_request_latency_is_counted_across_gunicorn_workers(socket):
    port = free_port()
    with tempfile.TemporaryDirectory() as metrics_dir:
        server = gunicorn(port=port, workers=3, env=process_env(PROMETHEUS_MULTIPROC_DIR=metrics_dir))
        try:
            session = requests.Session()
            for _ in range(30):
                assert session.get(f"http://127.0.0.1:{port}/api/sockets", timeout=5).status_code == 200
            text = requests.get(f"http://127.0.0.1:{port}/metrics", headers={"Host": "prometheus"}, timeout=5).text
        finally:
            server.stop()
    count = re.search(r'smartsocket_http_request_duration_seconds_count\{method="GET",route="api/sockets",status="200"\} ([\d.]+)', text)
    assert count and float(count.group(1)) >= 30, "every worker's requests, not only the answering worker's"
