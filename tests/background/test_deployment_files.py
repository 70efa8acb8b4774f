"""docker-compose.yml, .env.example and the Procfile describe the same stack the tests run (no Docker engine here)."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_from_the_environment_is_in_env_example():
    settings = (ROOT / "smartsocket_site" / "settings.py").read_text()
    names = set(re.findall(r'(?:env_[a-z]+|os\.environ\.get)\(\s*"([A-Z_][A-Z0-9_]*)"', settings))
    documented = set(re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert {"DATABASE_URL", "REDIS_URL", "SMARTSOCKET_DEFAULT_SOCKET_ADDRESS", "SMARTSOCKET_SAMPLE_INTERVAL_ON"} <= names
    assert names - documented == set()


def test_compose_runs_web_worker_beat_and_simulator_on_postgres_and_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "safety", "beat", "simulator"}
    for name in ("web", "worker", "safety", "beat", "simulator"):
        service = services[name]
        assert service["env_file"] == ".env" and "dockerfile_inline" in service["build"]
        assert service["environment"]["DATABASE_URL"].startswith("postgres://") and service["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert "gunicorn smartsocket_site.wsgi" in services["web"]["command"] and "migrate" in services["web"]["command"]
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    for name in ("worker", "safety", "beat"):
        compose_args = services[name]["command"].split()
        procfile_args = procfile[name].replace(".venv/bin/", "").split()
        assert compose_args[:4] == procfile_args[:4], f"{name}: same program as `make run`"
        assert [a for a in compose_args if a.startswith("--without")] == [a for a in procfile_args if a.startswith("--without")]
    for name in ("worker", "safety"):
        queue = services[name]["command"].split("--queues ")[1].split()[0]
        assert queue == procfile[name].split("--queues ")[1].split()[0].replace(":-${SMARTSOCKET_CELERY_QUEUE:-celery}-safety}", ":-celery-safety}")
    assert "safety" in services["safety"]["command"] and "safety" not in services["worker"]["command"], "a pool of its own"
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy", "migrations first"
    assert services["postgres"]["healthcheck"] and services["redis"]["healthcheck"]
