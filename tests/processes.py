"""Real processes (gunicorn, Celery worker and beat) run against the test database, then stopped."""
import os
import signal
import socket as pysocket
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = Path(settings.VAR_DIR) / "test-logs"


def eventually(check, timeout: float, what: str):
    """Poll `check` until it returns something truthy, and return that; fail with `what` after `timeout` seconds."""
    import pytest

    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.2f}s: {what}")
        time.sleep(0.05)
    return result


def require_service(what: str, available: bool, why: str) -> None:
    """Skip with a clear reason when a server is missing; fail instead under .ci/run, which starts them."""
    import pytest

    if available:
        return
    if os.environ.get("SMARTSOCKET_REQUIRE_SERVICES") == "True":
        pytest.fail(f"{what} is required here (SMARTSOCKET_REQUIRE_SERVICES=True) but {why}")
    pytest.skip(f"needs {what}: {why} (.ci/run starts one)")


def free_port() -> int:
    with pysocket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL naming the database this test run uses."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this test run's database, plus `extra`."""
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DJANGO_SETTINGS_MODULE": "smartsocket_site.settings", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


class ManagedProcess:
    """A child process in its own process group, logging to a file, always stopped by the test."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]):
        self.name, self.args, self.env = name, args, env
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.popen = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.running:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {text!r} not logged within {timeout}s:\n{self.log()[-3000:]}")

    def wait_for_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            try:
                requests.get(url, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {url} did not answer within {timeout}s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        self._signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL what is left after `timeout`."""
        if not self.running:
            return
        self._signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def gunicorn(*, port: int, workers: int = 4, threads: int = 1, env: dict[str, str] | None = None) -> ManagedProcess:
    """gunicorn serving the project on 127.0.0.1:`port`, started and answering."""
    args = [sys.executable, "-m", "gunicorn", "smartsocket_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads), "--timeout", "60"]
    process = ManagedProcess("gunicorn", args, env or process_env()).start()
    process.wait_for_http(f"http://127.0.0.1:{port}/api/sockets")
    return process
