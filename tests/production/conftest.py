"""Fixtures of the production-topology tests: PostgreSQL and Redis guards, gunicorn, several plugs."""
import os

import pytest
import redis
from django.conf import settings


def require_service(what: str, available: bool, why: str) -> None:
    """Skip with a clear reason when a server is missing; fail instead under .ci/run, which starts them."""
    if available:
        return
    if os.environ.get("SMARTSOCKET_REQUIRE_SERVICES") == "True":
        pytest.fail(f"{what} is required here (SMARTSOCKET_REQUIRE_SERVICES=True) but {why}")
    pytest.skip(f"needs {what}: {why} (.ci/run starts one)")


@pytest.fixture
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
