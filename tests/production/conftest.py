"""Fixtures of the production-topology tests: PostgreSQL and Redis guards, gunicorn, several plugs, the whole stack."""
import os

import pytest
import redis
from django.conf import settings

from sockets.services import socket_create
from sockets.simulator import PlugSimulator, SimulatorServer
from tests.background.receiver import CallbackReceiver
from tests.background.stack import Stack
from tests.processes import eventually, free_port, gunicorn, process_env, require_service  # noqa: F401 - eventually: for the tests here


@pytest.fixture(scope="session")
def postgres() -> None:
    """This run's database is PostgreSQL."""
    engine = settings.DATABASES["default"]["ENGINE"]
    require_service("PostgreSQL", "postgresql" in engine, f"DATABASE_URL is not postgres://… (engine {engine})")


@pytest.fixture
def redis_url() -> str:
    """A Redis server that answers PING."""
    url = os.environ.get("REDIS_URL", "")
    require_service("Redis", bool(url), "REDIS_URL is not set")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        require_service("Redis", False, f"{url} does not answer: {exc}")
    return url


@pytest.fixture
def plugs(db):
    """Three simulated plugs, each behind its own socket row (`plug-0` … `plug-2`), stopped after the test."""
    servers = [SimulatorServer(plug=PlugSimulator()).start() for _ in range(3)]
    try:
        yield {socket_create(name=f"plug-{n}", address=server.url).name: server.plug for n, server in enumerate(servers)}
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def web(transactional_db, socket) -> str:
    """gunicorn (4 workers × 4 threads) on this run's database; its API base URL. Stopped before the database is flushed."""
    port = free_port()
    server = gunicorn(port=port, workers=4, threads=4, env=process_env())
    try:
        yield f"http://127.0.0.1:{port}/api"
    finally:
        server.stop()


@pytest.fixture
def production_stack(postgres, redis_url, transactional_db, socket, simulator) -> Stack:
    """gunicorn + Celery worker + beat on PostgreSQL with the Redis broker; the default socket is `simulator`."""
    yield from Stack(broker="redis", plug_url=simulator.url).run()


@pytest.fixture
def receiver():
    with CallbackReceiver() as receiver:
        yield receiver


