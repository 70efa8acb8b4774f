"""Monitoring at scale: N simulated plugs (one simulator process, one port, /plug/<n> each), every one held
ON by an instance and sampled every 5 s by ONE Celery worker (and beat), for a bounded time; prints how many
samples were due, missed and late (more than 1 s after their due time), and the pace the worker kept.

Usage: .venv/bin/python bench/monitoring.py [plugs] [--seconds S] [--concurrency C] [--pool threads|prefork]
On the embedded default (SQLite, the embedded broker) unless DATABASE_URL / REDIS_URL say otherwise (the
database must exist). Runs on 127.0.0.1 only and stops everything it started.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
INTERVAL = 5.0
LATE = timedelta(seconds=1)
WARM_UP = 3  # intervals: sockets all due at once at the start settle onto their phases within one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plugs", nargs="?", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time, after a warm-up of three intervals")
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's concurrency (the Procfile's default: 8 threads)")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    args = parser.parse_args()

    from sockets.simulator import PlugSimulator, SimulatorServer

    fleet = {str(n): PlugSimulator(device_name=f"Fleet Plug {n}", load_w=50.0 + n % 40) for n in range(1, args.plugs + 1)}
    fleet["0"] = PlugSimulator(device_name="The default socket's plug")  # not a fleet plug: the default socket, unheld, keeps it OFF
    with tempfile.TemporaryDirectory() as var, SimulatorServer(plugs=fleet) as simulator:
        env = {**os.environ, "SMARTSOCKET_VAR_DIR": var, "PROMETHEUS_MULTIPROC_DIR": var, "DJANGO_SETTINGS_MODULE": "smartsocket_site.settings",
               "SMARTSOCKET_DEFAULT_SOCKET_ADDRESS": f"{simulator.url}/plug/0", "SMARTSOCKET_SAMPLE_INTERVAL_ON": str(INTERVAL)}
        os.environ.update(env)
        import django

        django.setup()
        import logging

        logging.disable(logging.INFO)  # one line per start otherwise
        from django.core.management import call_command
        from django.utils import timezone

        from instances.services import instance_start
        from sockets.models import EnergySample, Socket
        from instances.selectors import instance_list_running
        from sockets.services import socket_create, socket_update

        call_command("migrate", verbosity=0)
        print(f"{args.plugs} plugs at {simulator.url}/plug/1 … /plug/{args.plugs}: creating sockets and holding each ON ...", flush=True)
        for n in range(1, args.plugs + 1):
            name, address = f"fleet-{n}", f"{simulator.url}/plug/{n}"
            socket = Socket.objects.filter(name=name).first()  # from an earlier run on this database: its plug moved
            socket = socket_update(socket_id=socket.pk, address=address) if socket else socket_create(name=name, address=address)
            if not instance_list_running(socket=socket).exists():
                instance_start(socket=socket)
        Socket.objects.update(next_sample_at=timezone.now())  # all due at once: the hardest start
        database = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgres") else "SQLite (embedded default)"
        broker = "Redis" if env.get("REDIS_URL") else "the embedded broker"
        worker, beat = worker_and_beat(env=env, var=var, pool=args.pool, concurrency=args.concurrency)
        try:
            print(f"one worker ({args.pool}, concurrency {args.concurrency}) and beat on {database} with {broker}; "
                  f"every plug sampled every {INTERVAL:g} s; warm-up {WARM_UP * INTERVAL:g} s, then {args.seconds:g} s measured ...", flush=True)
            time.sleep(WARM_UP * INTERVAL)
            since, cpu, own = timezone.now(), cpu_seconds(worker.pid), cpu_seconds(os.getpid())
            time.sleep(args.seconds)
            until, cpu, own = timezone.now(), cpu_seconds(worker.pid) - cpu, cpu_seconds(os.getpid()) - own
            time.sleep(LATE.total_seconds())  # a sample due just before the end may still come on time
        finally:
            stop(beat, worker)
        report(since=since, until=until, socket_ids=list(Socket.objects.filter(name__startswith="fleet-").values_list("pk", flat=True)),
               samples=EnergySample.objects.filter(socket__name__startswith="fleet-"))
        print(f"CPU while measured (user + system): the worker's processes {cpu / args.seconds:.2f} cores, "
              f"the simulated plugs (this process) {own / args.seconds:.2f} cores, of {os.cpu_count()}")


def worker_and_beat(*, env: dict, var: str, pool: str, concurrency: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    """One Celery worker serving both queues (sampling and the safety lane), and beat, quiet, each in a session of its own."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "smartsocket_site", "worker", "--pool", pool, "--concurrency", str(concurrency),
         "--queues", "celery,celery-safety", "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "smartsocket_site", "beat", "--loglevel", "WARNING",
                             "--schedule", f"{var}/beat-schedule"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return worker, beat


def stop(*processes: subprocess.Popen) -> None:
    """SIGTERM to each process group; SIGKILL to one that has not stopped within 15 s (a prefork pool left behind)."""
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children still running (a prefork pool), from /proc."""
    total = 0.0
    pids = [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def report(*, since, until, socket_ids: list[int], samples) -> None:
    """Each sample against its socket's own grid (sockets.services.socket_next_sample_at: every INTERVAL at the
    phase its id sets), the due times the monitoring keeps. Late: taken more than 1 s after its due time; missed:
    a due time in the window with no sample for it (a sample taken up to LATE after the window counts for a due
    time in it)."""
    from sockets.services import socket_next_sample_at

    step = timedelta(seconds=INTERVAL)
    taken_by_socket: dict[int, list] = {pk: [] for pk in socket_ids}
    for socket_id, taken_at in samples.filter(taken_at__gte=since, taken_at__lte=until + LATE).values_list("socket_id", "taken_at"):
        taken_by_socket.setdefault(socket_id, []).append(taken_at)
    span = (until - since).total_seconds()
    due = taken = late = missed = 0
    lateness = []
    for socket_id, times in taken_by_socket.items():
        slots, at = set(), socket_next_sample_at(socket_id=socket_id, after=since - timedelta(microseconds=1), interval=INTERVAL)
        while at <= until:
            slots.add(at)
            at += step
        seen = set()
        for taken_at in times:
            slot = socket_next_sample_at(socket_id=socket_id, after=taken_at - step, interval=INTERVAL)  # the due time at or before it
            if slot in slots:
                seen.add(slot)
                taken += 1
                delay = (taken_at - slot).total_seconds()
                late += delay > LATE.total_seconds()
                lateness.append(delay)
        due += len(slots)
        missed += len(slots - seen)
    print(f"samples due: {due}, taken: {taken} ({taken / span:.1f}/s)")
    print(f"missed: {missed} ({100 * missed / max(due, 1):.2f} %), late (> {LATE.total_seconds():g} s after due): {late} "
          f"({100 * late / max(due, 1):.2f} %)")
    if lateness:
        ordered = sorted(lateness)
        print(f"taken after due: p50 {statistics.median(ordered):.2f} s, p99 {ordered[min(int(len(ordered) * 0.99), len(ordered) - 1)]:.2f} s, "
              f"max {ordered[-1]:.2f} s")

if __name__ == "__main__":
    main()
