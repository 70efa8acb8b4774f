"""Real web (gunicorn), Celery worker and beat processes on the test database: reusable by any test.

`Stack(broker="embedded"|"redis", plug_url=...)` starts all three with the Procfile's commands;
`celery_worker(env=...)` and `celery_beat(env=...)` start one part. Stop what you start (`Stack.stop()`).
"""
import contextlib
import os
import shutil
import sys
import tempfile
import uuid

import pytest
import redis

from tests.processes import ManagedProcess, free_port, gunicorn, process_env

# Short intervals so the integration tests run in seconds. The deadline sweep keeps its default
# (1 s): deadlines are shown to hold at default settings.
FAST = {
    "SMARTSOCKET_SAMPLE_INTERVAL_ON": "0.5",
    "SMARTSOCKET_SAMPLE_INTERVAL_OFF": "1.5",
    "SMARTSOCKET_MONITOR_TICK": "0.25",
    "SMARTSOCKET_RECONCILE_SWEEP": "0.5",
    "SMARTSOCKET_RECONCILE_BACKOFF_MAX": "1",
    "SMARTSOCKET_CALLBACK_SWEEP": "0.5",
    "SMARTSOCKET_CALLBACK_BACKOFF": "0.5",
    "SMARTSOCKET_DEVICE_CONNECT_TIMEOUT": "0.5",
    "SMARTSOCKET_DEVICE_READ_TIMEOUT": "0.5",
}


def celery_worker(*, env: dict[str, str], lane: str = "default") -> ManagedProcess:
    """A Celery worker (the Procfile's `worker`, or with lane="safety" its `safety`), started and consuming."""
    queue = env.get("SMARTSOCKET_CELERY_QUEUE") or "celery"
    queue = f"{queue}-safety" if lane == "safety" else queue
    args = [sys.executable, "-m", "celery", "-A", "smartsocket_site", "worker", "--pool", "threads", "--concurrency", "8",
            "--queues", queue, "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
            "--hostname", f"{lane}@%h"]
    process = ManagedProcess(f"celery-{lane}", args, env).start()
    process.wait_for_log(" ready.")
    return process


def celery_beat(*, env: dict[str, str]) -> ManagedProcess:
    """Celery beat (the Procfile's command), started and sending its schedule."""
    args = [sys.executable, "-m", "celery", "-A", "smartsocket_site", "beat", "--loglevel", "INFO"]
    process = ManagedProcess("celery-beat", args, env).start()
    process.wait_for_log("beat: Starting...")
    return process


def redis_or_skip() -> str:
    """REDIS_URL of a server that answers; skipped (failed under SMARTSOCKET_REQUIRE_SERVICES=True) otherwise."""
    url = os.environ.get("REDIS_URL", "")
    reason = "REDIS_URL is not set" if not url else ""
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
        except redis.RedisError as exc:
            reason = f"{url} does not answer: {exc}"
    if reason and os.environ.get("SMARTSOCKET_REQUIRE_SERVICES") == "True":
        pytest.fail(f"Redis is required here (SMARTSOCKET_REQUIRE_SERVICES=True) but {reason}")
    if reason:
        pytest.skip(f"the Redis variant needs a Redis server: {reason}")
    return url


class Stack:
    """gunicorn + Celery worker + beat on this test run's database and one broker; parts can be stopped and restarted."""

    def __init__(self, *, broker: str, plug_url: str, **extra: str):
        self.broker = broker
        self.var_dir = tempfile.mkdtemp(prefix="smartsocket-stack-")
        env = {**FAST, "SMARTSOCKET_VAR_DIR": self.var_dir, "SMARTSOCKET_DEFAULT_SOCKET_ADDRESS": plug_url, **extra}
        if broker == "redis":  # a queue of its own: nothing left over from other runs is consumed
            env.update(REDIS_URL=redis_or_skip(), SMARTSOCKET_CELERY_QUEUE=f"test-{uuid.uuid4().hex}")
        else:
            env.update(REDIS_URL="", CELERY_BROKER_URL="")
        self.env = process_env(**env)
        self.port = free_port()
        self.web = self.worker = self.safety = self.beat = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> "Stack":
        self.web = gunicorn(port=self.port, workers=1, threads=4, env=self.env)
        self.start_background()
        return self

    def start_background(self) -> None:
        self.worker = celery_worker(env=self.env)
        self.safety = celery_worker(env=self.env, lane="safety")
        self.beat = celery_beat(env=self.env)

    def kill_background(self) -> None:
        """SIGKILL workers and beat, as a crash or a pulled plug would: what they held in memory is lost."""
        for process in (self.beat, self.worker, self.safety):
            if process is not None:
                process.kill()

    def stop(self) -> None:
        self.kill_background()
        if self.web is not None:
            self.web.kill()
        shutil.rmtree(self.var_dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-4000:]}" for p in (self.web, self.worker, self.safety, self.beat) if p is not None)

    @contextlib.contextmanager
    def running(self):
        """`with Stack(...).running() as stack:` — run() as a context manager."""
        yield from self.run()

    def run(self):
        """Fixture body: start, hand over, print the logs if the test fails, always stop."""
        try:
            yield self.start()
        except BaseException:
            print(self.logs())
            raise
        finally:
            self.stop()
