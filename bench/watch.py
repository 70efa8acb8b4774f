"""The must-be-OFF watch at scale (DESIGN §6.3): N idle simulated plugs (one simulator process, one port,
/plug/<n> each) watched by ONE Celery worker (and beat), while a hand switches one of them ON every
`--every` seconds; prints how long each stayed ON before the service switched it OFF again (the rule: within
2 s), the device requests the plugs answered per second, and the CPU the worker used.

Usage: .venv/bin/python bench/watch.py [plugs] [--seconds S] [--every S] [--concurrency C] [--pool threads|prefork]
On the embedded default (SQLite, the embedded broker) unless DATABASE_URL / REDIS_URL say otherwise (the
database must exist). Runs on 127.0.0.1 only and stops everything it started.
"""
import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from monitoring import cpu_seconds, stop, worker_and_beat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RULE = 2.0  # seconds an unheld plug may stay ON (DESIGN §6.3)
WARM_UP = 10.0  # seconds: every socket's first check and sample done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plugs", nargs="?", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time, after a warm-up")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between two hands switching a plug ON")
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's concurrency (default 8; the Procfile's safety worker runs 16 threads)")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    args = parser.parse_args()

    from sockets.simulator import PlugSimulator, SimulatorServer

    fleet = {str(n): PlugSimulator(device_name=f"Fleet Plug {n}") for n in range(1, args.plugs + 1)}
    fleet["0"] = PlugSimulator(device_name="The default socket's plug")
    with tempfile.TemporaryDirectory() as var, SimulatorServer(plugs=fleet) as simulator:
        env = {**os.environ, "SMARTSOCKET_VAR_DIR": var, "PROMETHEUS_MULTIPROC_DIR": var, "DJANGO_SETTINGS_MODULE": "smartsocket_site.settings",
               "SMARTSOCKET_DEFAULT_SOCKET_ADDRESS": f"{simulator.url}/plug/0"}
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        from sockets.models import Socket
        from sockets.services import socket_create, socket_update

        call_command("migrate", verbosity=0)
        print(f"{args.plugs} idle plugs at {simulator.url}/plug/1 … /plug/{args.plugs}: creating sockets ...", flush=True)
        for n in range(1, args.plugs + 1):
            name, address = f"fleet-{n}", f"{simulator.url}/plug/{n}"
            socket = Socket.objects.filter(name=name).first()  # from an earlier run on this database: its plug moved
            socket_update(socket_id=socket.pk, address=address) if socket else socket_create(name=name, address=address)
        database = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite (embedded default)"
        broker = "Redis" if env.get("REDIS_URL") else "the embedded broker"
        worker, beat = worker_and_beat(env=env, var=var, pool=args.pool, concurrency=args.concurrency)
        try:
            print(f"one worker ({args.pool}, concurrency {args.concurrency}) and beat on {database} with {broker}; warm-up {WARM_UP:g} s, "
                  f"then a hand switches a plug ON every {args.every:g} s for {args.seconds:g} s ...", flush=True)
            time.sleep(WARM_UP)
            requests_before = sum(len(plug.commands) for plug in fleet.values())
            cpu, own, began = cpu_seconds(worker.pid), cpu_seconds(os.getpid()), time.monotonic()
            on_for = hands(plugs=[fleet[str(n)] for n in range(1, args.plugs + 1)], seconds=args.seconds, every=args.every)
            elapsed, cpu, own = time.monotonic() - began, cpu_seconds(worker.pid) - cpu, cpu_seconds(os.getpid()) - own
            requests = sum(len(plug.commands) for plug in fleet.values()) - requests_before
        finally:
            stop(beat, worker)
        report(on_for=on_for)
        print(f"device requests the plugs answered (checks, samples, switching OFF): {requests / elapsed:.0f}/s; CPU while measured (user + system): the worker's "
              f"processes {cpu / elapsed:.2f} cores, the simulated plugs and the hands (this process) {own / elapsed:.2f} cores, of {os.cpu_count()}")


def hands(*, plugs: list, seconds: float, every: float) -> list[float | None]:
    """Every `every` seconds a hand switches an idle plug ON; each is watched until it is OFF again (or the run and
    a grace of 10 s end). Returns how long each stayed ON (None: never switched OFF)."""
    results: list[float | None] = []
    watchers = []

    def watch(plug, since: float) -> None:
        deadline = since + seconds + 10
        while time.monotonic() < deadline:
            if not plug.is_on:
                results.append(time.monotonic() - since)
                return
            time.sleep(0.02)
        results.append(None)

    stop_at = time.monotonic() + seconds
    idle = list(plugs)
    random.shuffle(idle)
    while time.monotonic() < stop_at and idle:
        plug = idle.pop()
        plug.press_button()
        watcher = threading.Thread(target=watch, args=(plug, time.monotonic()))
        watcher.start()
        watchers.append(watcher)
        time.sleep(every)
    for watcher in watchers:
        watcher.join()
    return results


def report(*, on_for: list[float | None]) -> None:
    done = sorted(value for value in on_for if value is not None)
    never = len(on_for) - len(done)
    within = sum(value <= RULE for value in done)
    print(f"plugs switched ON by hand: {len(on_for)}; switched OFF again within {RULE:g} s: {within} ({100 * within / max(len(on_for), 1):.1f} %); "
          f"later: {len(done) - within}; not at all: {never}")
    if done:
        print(f"ON for: p50 {statistics.median(done):.2f} s, p99 {done[min(int(len(done) * 0.99), len(done) - 1)]:.2f} s, max {done[-1]:.2f} s")


if __name__ == "__main__":
    main()
