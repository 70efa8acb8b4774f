"""Time and memory of rolling up a backlog of samples older than the retention, in a throwaway SQLite database
(or the database of DATABASE_URL with --database-url-from-env).

Usage: .venv/bin/python bench/rollup.py [samples]   (default 1000000)
Rolls up a tenth of the backlog, then all of it, so the figures show whether memory grows with the
backlog: time, samples/s, and how far the process's resident memory rose above where it started.
"""
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2025, 6, 1, tzinfo=UTC)


def fill(name: str, count: int):
    from sockets.services import socket_create
    from tests.audit.test_retention import insert_samples

    socket = socket_create(name=name, address="http://127.0.0.1:9")
    insert_samples(socket, count, START)
    return socket


def main(samples: int) -> None:
    folder = tempfile.mkdtemp(prefix="smartsocket-bench-")
    os.environ["SMARTSOCKET_VAR_DIR"] = folder
    if "--database-url-from-env" not in sys.argv:
        os.environ.pop("DATABASE_URL", None)  # the throwaway SQLite file
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smartsocket_site.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.db import connection

    from sockets.services.retention import samples_roll_up
    from tests.audit.test_retention import ResidentPeak

    print(f"database: {connection.vendor}")
    print(f"{'samples':>9} {'seconds':>8} {'samples/s':>10} {'RSS growth MiB':>15}")
    for count in (samples // 10, samples):
        fill(f"bench-{count}", count)
        started = time.perf_counter()
        with ResidentPeak() as memory:
            done = samples_roll_up()
        seconds = time.perf_counter() - started
        print(f"{done.samples:>9} {seconds:>8.1f} {done.samples / seconds:>10.0f} {memory.growth / 2**20:>15.1f}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:] if a.isdigit()]
    main(*(args or [1_000_000]))
