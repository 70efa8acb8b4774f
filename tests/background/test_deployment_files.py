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
    assert set(services) == {"postgres", "redis", "web", "worker", "safety", "beat", "listen", "mqtt", "simulator"}
    for name in ("web", "worker", "safety", "beat", "listen", "simulator"):
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
    assert services["listen"]["command"].split() == procfile["listen"].replace(".venv/bin/", "").split() == ["python", "manage.py", "listen"]
    mounted = services["mqtt"]["volumes"][0].split(":")
    assert services["mqtt"]["image"].startswith("eclipse-mosquitto") and (ROOT / mounted[0]).is_file(), "the broker's config is in the repo"


def test_every_compose_service_has_a_healthcheck_log_rotation_and_the_simulator_is_dev_only():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        assert service.get("healthcheck") or name == "simulator", f"{name}: no healthcheck"
        assert service["logging"]["options"]["max-size"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("worker", "safety", "beat", "listen"):
        assert services[name]["healthcheck"]["test"][-2:] == ["heartbeat_fresh", name]
    assert services["simulator"]["profiles"] == ["dev"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv/", "var/", ".git/", "*.sqlite3"} <= set(ignored)


def run_manage(*args: str, **env: str):
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOG_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_the_placeholder_secret_key_is_refused_with_debug_off():
    result = run_manage("check", DJANGO_SECRET_KEY="change-me-to-a-long-random-string")
    assert result.returncode != 0 and "placeholder from .env.example" in result.stderr


def test_check_deploy_is_clean_for_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY="k" * 20 + "x3Vq9-random-production-key-7Zr2LmN0pQ",
                        DJANGO_SECURE_COOKIES="True", DJANGO_HSTS_SECONDS="31536000", DJANGO_HSTS_PRELOAD="True",
                        DJANGO_ALLOWED_HOSTS="smartsocket.example.org")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_log_format_json_writes_one_object_per_line():
    import json

    code = "import logging; logging.getLogger('instances.services.holders').info('start: socket=%s', 'default')"
    result = run_manage("shell", "-c", code, LOG_FORMAT="json")
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "start: socket=default" and line["level"] == "INFO" and line["logger"] == "instances.services.holders"
    assert run_manage("check", LOG_FORMAT="xml").returncode != 0
