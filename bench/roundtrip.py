"""Start→stop round trip on the embedded default: SQLite, the simulator, gunicorn.

Usage: .venv/bin/python bench/roundtrip.py [pairs]   (prints latency figures, then exits)
Everything runs in a throwaway folder on 127.0.0.1 and is stopped at the end.
"""
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


def main(pairs: int) -> None:
    sim_port, web_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as var:
        env = {**os.environ, "SMARTSOCKET_VAR_DIR": var, "SMARTSOCKET_SIMULATOR_PORT": str(sim_port)}
        env.pop("DATABASE_URL", None)
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        procs = [
            subprocess.Popen([python, "manage.py", "run_simulator", "--port", str(sim_port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True),
            subprocess.Popen([python, "-m", "gunicorn", "smartsocket_site.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
        ]
        try:
            base = f"http://127.0.0.1:{web_port}/api"
            wait_for(f"{base}/sockets")
            session = requests.Session()
            starts, stops, trips = [], [], []
            print(f"{pairs} start/stop pairs against {base} ...", flush=True)
            for n in range(pairs):
                t0 = time.perf_counter()
                instance = session.post(f"{base}/instance", timeout=10).json()["instance"]
                t1 = time.perf_counter()
                assert session.put(f"{base}/instance/{instance['id']}", timeout=10).json()["triggeredPowerOff"]
                t2 = time.perf_counter()
                starts.append(t1 - t0), stops.append(t2 - t1), trips.append(t2 - t0)
                if (n + 1) % 50 == 0:
                    print(f"  {n + 1}/{pairs}", flush=True)
            for name, values in (("start", starts), ("stop", stops), ("start+stop", trips)):
                ms = sorted(v * 1000 for v in values)
                print(f"{name:>11}: median {statistics.median(ms):6.1f} ms  p95 {ms[int(len(ms) * 0.95) - 1]:6.1f} ms  max {ms[-1]:6.1f} ms")
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
