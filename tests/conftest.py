"""Shared fixtures: a real plug simulator over HTTP, the default socket pointed at it, an API client."""
import pytest
from rest_framework.test import APIClient

from sockets.models import Socket
from sockets.services import socket_ensure_default
from sockets.simulator import PlugSimulator, SimulatorServer


@pytest.fixture
def simulator():
    """A simulated Tasmota plug on a free loopback port, stopped after the test."""
    with SimulatorServer(plug=PlugSimulator()) as server:
        yield server


@pytest.fixture
def plug(simulator) -> PlugSimulator:
    return simulator.plug


@pytest.fixture
def socket(db, simulator) -> Socket:
    """The default socket, driven through the simulator."""
    socket = socket_ensure_default()
    socket.address = simulator.url
    socket.save(update_fields=["address"])
    return socket


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def fast_device_timeouts(settings):
    settings.SMARTSOCKET_DEVICE_CONNECT_TIMEOUT = 0.5
    settings.SMARTSOCKET_DEVICE_READ_TIMEOUT = 0.5


@pytest.fixture(autouse=True, scope="session")
def _celery_messages_stay_in_process():
    """Tasks sent by code under test (deadline timers, callbacks) go to an in-memory broker no worker reads.

    Tests that need them run a real worker and beat against a broker of their own (tests/background).
    """
    from smartsocket_site.celery import app

    app.conf.broker_url = "memory://"
    app.conf.broker_transport_options = {}


@pytest.fixture
def eager_tasks():
    """Tasks sent while the test runs (a sweep's fan-out) run at once, in-process."""
    from smartsocket_site.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


@pytest.fixture
def broker():
    """A throw-away Mosquitto on 127.0.0.1 (skipped where Debian's `mosquitto` is missing; a failure under .ci/run)."""
    from tests.broker import Mosquitto
    from tests.processes import require_service

    mosquitto = Mosquitto()
    require_service("Mosquitto", mosquitto.binary is not None, "the `mosquitto` command is not installed (apt-get install mosquitto)")
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()
