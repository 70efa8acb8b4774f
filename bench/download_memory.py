"""Memory and time of GET /api/download over a large history, in a throwaway SQLite database.

Usage: .venv/bin/python bench/download_memory.py [samples] [instances]   (default 100000 1000)
Builds the history twice (a quarter of it, then all of it) so the figures show whether the
peak grows with the history; prints one line per size and format, then exits.
"""
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = timedelta(seconds=10)
START = datetime(2026, 1, 5, tzinfo=UTC)


def build(*, name: str, samples: int, instances: int) -> None:
    """`samples` readings every 10 s on a new socket, `instances` back-to-back holders over them."""
    from instances.models import Instance
    from sockets.models import EnergySample
    from sockets.services import socket_create

    socket = socket_create(name=name, address="http://127.0.0.1:9")
    EnergySample.objects.bulk_create(
        (EnergySample(socket=socket, taken_at=START + i * STEP, is_on=True, power_w=100.0 + i % 7, voltage_v=230.0,
                      current_a=0.43 + (i % 7) / 100, today_kwh=i / 3600, total_kwh=10 + i / 3600) for i in range(samples)),
        batch_size=5000,
    )
    per = max(samples // instances, 1)
    Instance.objects.bulk_create(
        (Instance(id=f"{name}-{n:06d}", socket=socket, started_at=START + n * per * STEP, stopped_at=START + ((n + 1) * per - 1) * STEP,
                  stop_reason="requested", energy_consumed_wh=1.0) for n in range(instances)),
        batch_size=1000,
    )


def measure(*, socket_name: str, fmt: str) -> tuple[int, float, float]:
    """Stream the download to /dev/null: (bytes, seconds, peak Python MiB)."""
    from instances.reports import download_response
    from sockets.selectors import socket_get

    tracemalloc.start()
    started = time.perf_counter()
    response = download_response(socket=socket_get(name=socket_name), since=None, until=None, fmt=fmt)
    size = sum(len(chunk) for chunk in response.streaming_content)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size, elapsed, peak / 2**20


def main(samples: int, instances: int) -> None:
    folder = tempfile.mkdtemp(prefix="smartsocket-bench-")
    os.environ["SMARTSOCKET_VAR_DIR"] = folder
    os.environ.pop("DATABASE_URL", None)  # always the throwaway SQLite file
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smartsocket_site.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    print(f"{'samples':>9} {'instances':>9} {'format':>6} {'MiB out':>8} {'seconds':>8} {'peak MiB':>9}")
    for fraction in (4, 1):
        name = f"bench{fraction}"
        started = time.perf_counter()
        build(name=name, samples=samples // fraction, instances=instances // fraction)
        print(f"  (built {samples // fraction} samples in {time.perf_counter() - started:.1f} s)")
        for fmt in ("json", "csv"):
            size, seconds, peak = measure(socket_name=name, fmt=fmt)
            print(f"{samples // fraction:>9} {instances // fraction:>9} {fmt:>6} {size / 2**20:>8.2f} {seconds:>8.2f} {peak:>9.2f}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*(args + [100_000, 1_000][len(args):]))
