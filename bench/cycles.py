"""The API's figures against gunicorn and the project's simulator (issue 9): sequential start→stop cycles/s,
POST/PUT p50/p99, device requests per call (counted at the simulator); 32 concurrent clients on one plug
(cycles/s, with the invariants checked after); GET instance req/s with 8 client threads; GET /api/download
p50 over a history of 2,200 instances (the run's, topped up with more cycles); the floors under them (a
request that does nothing, one that makes one query, one device request); and the ceiling: the same gunicorn
and client around a WSGI app that does nothing. On the embedded default (SQLite),
or on PostgreSQL when DATABASE_URL is set (the database must exist; it is migrated; REDIS_URL is not needed:
no worker runs).

Usage: .venv/bin/python bench/cycles.py [cycles] [--workers N] [--latency SECONDS] [--clients N] [--seconds S] [--history N]
Runs bounded, on 127.0.0.1 only, and stops everything it started.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cycles", nargs="?", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (make run: 2; production: 4)")
    parser.add_argument("--latency", type=float, default=0.0, help="simulated plug latency per request, seconds")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients on one plug (0: skip)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the concurrent phases run")
    parser.add_argument("--history", type=int, default=2200, help="instances the download covers (topped up with more cycles)")
    args = parser.parse_args()

    from sockets.simulator import PlugSimulator, SimulatorServer

    plug = PlugSimulator()
    plug.latency = args.latency
    with tempfile.TemporaryDirectory() as var, SimulatorServer(plug=plug) as simulator:
        env = {**os.environ, "SMARTSOCKET_VAR_DIR": var, "SMARTSOCKET_DEFAULT_SOCKET_ADDRESS": simulator.url,
               "PROMETHEUS_MULTIPROC_DIR": var, "DJANGO_SETTINGS_MODULE": "smartsocket_site.settings"}
        database = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite (embedded default)"
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        os.environ.update(env)  # this process reads the same database for the invariants
        import django

        django.setup()
        port = free_port()
        web = gunicorn("smartsocket_site.wsgi", port=port, workers=args.workers, env=env)
        try:
            base = f"http://127.0.0.1:{port}/api"
            wait_for(f"http://127.0.0.1:{port}/healthz")
            session = requests.Session()
            for _ in range(20):  # warm up: connections, imports
                session.put(f"{base}/instance/{session.post(f'{base}/instance', timeout=10).json()['instance']['id']}", timeout=10)
            starts, stops = [], []
            before = len(plug.commands)
            print(f"{args.cycles} start→stop cycles, {database}, gunicorn {args.workers} workers, plug latency {args.latency * 1000:g} ms ...", flush=True)
            began = time.perf_counter()
            for n in range(args.cycles):
                t0 = time.perf_counter()
                instance = session.post(f"{base}/instance", timeout=10).json()["instance"]
                t1 = time.perf_counter()
                assert session.put(f"{base}/instance/{instance['id']}", timeout=10).json()["triggeredPowerOff"]
                t2 = time.perf_counter()
                starts.append(t1 - t0)
                stops.append(t2 - t1)
                if (n + 1) % 100 == 0:
                    print(f"  {n + 1}/{args.cycles}", flush=True)
            elapsed = time.perf_counter() - began
            requests_per_cycle = (len(plug.commands) - before) / args.cycles
            held_start = session.post(f"{base}/instance", timeout=10).json()["instance"]["id"]
            mark = len(plug.commands)
            second = session.post(f"{base}/instance", timeout=10).json()["instance"]["id"]
            second_start = len(plug.commands) - mark
            mark = len(plug.commands)
            session.put(f"{base}/instance/{second}", timeout=10)
            other_stop = len(plug.commands) - mark
            session.put(f"{base}/instance/{held_start}", timeout=10)
            print(f"sequential cycles/s: {args.cycles / elapsed:.1f}")
            for name, values in (("POST start", starts), ("PUT stop", stops)):
                ms = [v * 1000 for v in values]
                print(f"{name:>10}: p50 {statistics.median(ms):6.2f} ms  p99 {percentile(ms, 0.99):6.2f} ms")
            print(f"device requests per powering cycle (start that switches ON + stop that switches OFF): {requests_per_cycle:.1f} "
                  f"({', '.join(sorted(set(plug.commands[before:before + 8])))})")
            print(f"device requests for a start that switches nothing: {second_start}; for a stop that switches nothing: {other_stop}")
            if args.clients:
                concurrent_cycles(base=base, plug=plug, clients=args.clients, seconds=args.seconds)
            print(f"GET instance, 8 client threads: {reads_per_second(url=f'{base}/instance/{held_start}', threads=8, seconds=args.seconds):.0f} req/s")
            top_up(base=base, instances=args.history)
            download_p50(base=base)
            download_floors()
            floors(base=base, plug_url=simulator.url, seconds=args.seconds)
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(timeout=10)
        ceiling(workers=args.workers, seconds=args.seconds)


def gunicorn(app: str, *, port: int, workers: int, env: dict | None = None) -> subprocess.Popen:
    """gunicorn serving `app` the way `make run` and the Procfile do (sync workers, 4 threads each), on 127.0.0.1."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", "4"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def concurrent_cycles(*, base: str, plug, clients: int, seconds: float) -> None:
    """`clients` threads each running start→stop cycles on the one plug for `seconds`; then the invariants: nothing
    runs, the relay is OFF, and it was switched ON exactly once per power period (no double power-on)."""
    stop_at, done, errors = time.monotonic() + seconds, [], []
    ons_before = plug.power_on_commands

    def client() -> None:
        session, count = requests.Session(), 0
        while time.monotonic() < stop_at:
            try:
                instance = session.post(f"{base}/instance", timeout=30).json()["instance"]["id"]
                session.put(f"{base}/instance/{instance}", timeout=30).raise_for_status()
                count += 1
            except (requests.RequestException, KeyError, ValueError) as exc:
                errors.append(exc)
        done.append(count)

    print(f"{clients} concurrent clients on one plug for {seconds:g} s ...", flush=True)
    began, started = time.perf_counter(), datetime.now(UTC)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    from sockets.models import PowerPeriod

    running = len(requests.get(f"{base}/server/status", timeout=10).json()["runningInstances"])
    periods = PowerPeriod.objects.filter(power_on_at__gte=started).count()
    switched_on = plug.power_on_commands - ons_before
    print(f"{clients} clients, one plug: {sum(done) / elapsed:.1f} cycles/s ({sum(done)} cycles, {len(errors)} errors); after: running "
          f"{running}, relay {'ON' if plug.is_on else 'OFF'}, Power On sent {switched_on}× for {periods} power periods")


def reads_per_second(*, url: str, threads: int, seconds: float) -> float:
    """GETs/s of `url` from `threads` clients at once for `seconds`."""
    stop_at, counts = time.monotonic() + seconds, []

    def reader() -> None:
        session, count = requests.Session(), 0
        while time.monotonic() < stop_at:
            session.get(url, timeout=10).raise_for_status()
            count += 1
        counts.append(count)

    began = time.perf_counter()
    workers = [threading.Thread(target=reader) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


def top_up(*, base: str, instances: int, threads: int = 4) -> None:
    """More start→stop cycles (from `threads` clients) until the history holds `instances` instances."""
    from instances.models import Instance

    missing = instances - Instance.objects.count()
    if missing <= 0:
        return
    print(f"{missing} more cycles for a history of {instances} instances ...", flush=True)

    def client(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            session.put(f"{base}/instance/{session.post(f'{base}/instance', timeout=30).json()['instance']['id']}", timeout=30).raise_for_status()

    workers = [threading.Thread(target=client, args=(missing // threads + (n < missing % threads),)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def download_p50(*, base: str, runs: int = 15) -> None:
    session = requests.Session()
    times, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        body = session.get(f"{base}/download", timeout=60).content
        times.append((time.perf_counter() - t0) * 1000)
        size = len(body)
    count = len(session.get(f"{base}/download", timeout=60).json()["instances"])
    print(f"GET /api/download of {count} instances ({size / 1e6:.1f} MB): p50 {statistics.median(times):.0f} ms")


def download_floors(*, runs: int = 9) -> None:
    """What the download's rows cost before any rendering, in this process on the same database: read through the ORM
    (`values()`, as the download reads them), through a plain cursor (the driver's own type conversion only), and
    the stdlib's json.dumps of them."""
    import json

    from django.db import connection

    from instances.api.serializers import INSTANCE_VALUES
    from instances.selectors import instance_list_between

    rows = instance_list_between(socket=None, since=None, until=None).values(*INSTANCE_VALUES)
    sql, params = rows.query.sql_with_params()

    def plain() -> list:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def p50(read) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            read()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    texts = [{name: value.isoformat() if isinstance(value, datetime) else value for name, value in row.items()} for row in rows]
    print(f"the download's floors, p50 over its {len(texts)} rows: read through the ORM {p50(lambda: list(rows.iterator(chunk_size=2000))):.0f} ms; "
          f"through a plain cursor {p50(plain):.0f} ms; json.dumps of them {p50(lambda: [json.dumps(row) for row in texts]):.0f} ms")


def p50_ms(url: str, *, runs: int = 300) -> float:
    """The median time of a GET of `url`, one after another on one connection."""
    session, times = requests.Session(), []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.get(url, timeout=10)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def floors(*, base: str, plug_url: str, seconds: float) -> None:
    """What every call pays before its own work: Django's stack, one ORM query, one device request."""
    healthz = f"{base.rsplit('/api', 1)[0]}/healthz"
    print(f"floors, p50: a Django request that does nothing (/healthz) {p50_ms(healthz):.2f} ms; a DRF view with one query "
          f"(an unknown instance, 404) {p50_ms(f'{base}/instance/unknown'):.2f} ms; one device request {p50_ms(f'{plug_url}/cm?cmnd=Power'):.2f} ms; "
          f"/healthz with 8 client threads {reads_per_second(url=healthz, threads=8, seconds=seconds):.0f} req/s")


def ceiling(*, workers: int, seconds: float) -> None:
    """The same gunicorn and client around a WSGI app that does nothing (bench/bare_wsgi.py): no Django figure can beat it."""
    port = free_port()
    web = gunicorn("bench.bare_wsgi:application", port=port, workers=workers)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url)
        one = p50_ms(url)
        print(f"ceiling, gunicorn ({workers} workers) around an app that does nothing: p50 {one:.2f} ms (so at most {1000 / (2 * one):.0f} "
              f"sequential start→stop cycles/s); 8 client threads {reads_per_second(url=url, threads=8, seconds=seconds):.0f} req/s")
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=10)


if __name__ == "__main__":
    main()
