"""Start→stop cycles against gunicorn and the project's simulator: cycles/s, POST/PUT p50/p99, device
requests per call (counted at the simulator) — on the embedded default (SQLite), or on PostgreSQL when
DATABASE_URL is set (the database must exist and be migrated; REDIS_URL is not needed: no worker runs).

Usage: .venv/bin/python bench/cycles.py [cycles] [--workers N] [--latency SECONDS]
Runs bounded (cycles, then stops), on 127.0.0.1 only, and stops everything it started.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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
    args = parser.parse_args()

    from sockets.simulator import PlugSimulator, SimulatorServer

    plug = PlugSimulator()
    plug.latency = args.latency
    with tempfile.TemporaryDirectory() as var, SimulatorServer(plug=plug) as simulator:
        env = {**os.environ, "SMARTSOCKET_VAR_DIR": var, "SMARTSOCKET_DEFAULT_SOCKET_ADDRESS": simulator.url,
               "PROMETHEUS_MULTIPROC_DIR": var, "DJANGO_SETTINGS_MODULE": "smartsocket_site.settings"}
        database = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite (embedded default)"
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        port = free_port()
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "smartsocket_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), "--threads", "4"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
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
        finally:
            os.killpg(web.pid, signal.SIGTERM)
            web.wait(timeout=10)


if __name__ == "__main__":
    main()
