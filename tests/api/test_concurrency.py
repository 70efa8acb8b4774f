"""Many clients against a live server process: the plug is ON whenever someone holds it."""
import random
import threading
import time

import pytest
import requests

from sockets.models import PowerPeriod
from tests.processes import free_port, gunicorn

THREADS = 16
ROUNDS = 5


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_and_stops_keep_the_plug_on_while_held(socket, plug):
    port = free_port()
    server = gunicorn(port=port, workers=2, threads=8)
    base = f"http://127.0.0.1:{port}/api"
    barrier = threading.Barrier(THREADS)
    held: list[tuple[float, float]] = []
    answers: list[dict] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        barrier.wait(timeout=30)
        for _ in range(ROUNDS):
            started = session.post(f"{base}/instance", data={"emergencyStopTimeout": "600000"}, timeout=30)
            answered_at = time.time()
            if started.status_code != 200:
                failures.append(f"start {started.status_code} {started.text[:200]}")
                continue
            time.sleep(rng.uniform(0, 0.05))
            stop_requested_at = time.time()
            stopped = session.put(f"{base}/instance/{started.json()['instance']['id']}", timeout=30)
            if stopped.status_code != 200:
                failures.append(f"stop {stopped.status_code} {stopped.text[:200]}")
            with lock:
                held.append((answered_at, stop_requested_at))
                answers.extend([started.json(), stopped.json()])

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.stop()

    assert failures == []
    assert len(held) == THREADS * ROUNDS
    assert all(plug.was_on_throughout(t0, t1) for t0, t1 in held)
    assert not plug.is_on
    periods = list(PowerPeriod.objects.order_by("power_on_at"))
    assert all(p.power_off_at is not None for p in periods)
    assert all(a.power_off_at <= b.power_on_at for a, b in zip(periods, periods[1:]))
    power_ons = sum(1 for a in answers if a.get("triggeredPowerOn"))
    power_offs = sum(1 for a in answers if a.get("triggeredPowerOff"))
    assert power_ons == power_offs == len(periods) == plug.power_on_commands == plug.power_off_commands
