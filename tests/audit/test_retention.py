"""Retention (DESIGN §8): raw samples older than SMARTSOCKET_SAMPLE_RETENTION_DAYS are folded into per-minute and
per-hour rollups in bounded batches, then deleted; the chart and the API read the rollups; nothing else is deleted."""
import gc
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.models import Event
from instances.models import Instance
from sockets.models import EnergyRollup, EnergySample, PowerPeriod, Resolution, Socket
from sockets.services import socket_create
from sockets.selectors import retention_cutoff
from sockets.services.retention import samples_roll_up
from sockets.tasks import roll_up_samples
from tests.admin.history import make_history

pytestmark = pytest.mark.django_db
OLD = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # far older than any retention


def reading(socket: Socket, at: datetime, watts: float, total_kwh: float, amps: float = 0.5) -> EnergySample:
    return EnergySample(socket=socket, taken_at=at, is_on=True, power_w=watts, voltage_v=230, current_a=amps, today_kwh=0, total_kwh=total_kwh)


def rollups(socket: Socket, resolution: str) -> list[tuple]:
    return list(EnergyRollup.objects.filter(socket=socket, resolution=resolution).order_by("bucket_start").values_list(
        "bucket_start", "samples", "min_w", "max_w", "mean_w", "max_current_a", "energy_wh"))


@pytest.fixture
def plug_history():
    """Old readings every 20 s from 08:00 to 09:59:40 (360 of them), the counter reset at 09:00, and one fresh reading."""
    socket = socket_create(name="bench", address="http://127.0.0.1:9")
    rows, total = [], 3.0
    for n in range(360):
        at = OLD + timedelta(seconds=20 * n)
        if at == OLD.replace(hour=9):
            total = 0.0005  # rebooted: the counter starts again from zero (and 0.5 Wh since)
        elif n:
            total += 0.0005  # 90 W for 20 s
        rows.append(reading(socket, at, 90.0 + n % 3, round(total, 7), amps=0.4 + (n % 4) / 10))
    rows.append(reading(socket, timezone.now(), 90.0, 5.0))
    EnergySample.objects.bulk_create(rows)
    return socket


def test_old_samples_fold_into_minute_and_hour_rollups_and_only_they_are_deleted(plug_history):
    done = samples_roll_up()

    assert done.samples == 360 and EnergySample.objects.filter(socket=plug_history).count() == 1, "the fresh reading stays raw"
    minutes, hours = rollups(plug_history, Resolution.MINUTE), rollups(plug_history, Resolution.HOUR)
    assert len(minutes) == 120 and len(hours) == 2
    first = minutes[0]
    assert first[:5] == (OLD, 3, 90.0, 92.0, 91.0) and first[5] == pytest.approx(0.6)
    assert first[6] == pytest.approx(1.0), "08:00:00 has no reading before it: two increases"
    assert all(m[6] == pytest.approx(1.5) for m in minutes[1:]), "three increases of 0.5 Wh a minute, the reset one included"
    assert [h[1] for h in hours] == [180, 180]
    assert sum(h[6] for h in hours) == pytest.approx(359 * 0.5), "no energy lost or negative across the reset"


def test_small_batches_and_repeated_passes_give_the_same_rollups(plug_history):
    reference_socket = socket_create(name="reference", address="http://127.0.0.1:9")
    EnergySample.objects.bulk_create([reading(reference_socket, s.taken_at, s.power_w, s.total_kwh, s.current_a)
                                      for s in EnergySample.objects.filter(socket=plug_history, taken_at__lt=retention_cutoff())])
    samples_roll_up(batch=7, max_samples=70)  # a beat run cut short: the next one goes on where it stopped
    samples_roll_up(batch=7)
    samples_roll_up(batch=7)  # nothing left: nothing changes

    def comparable(socket):
        return [(*row[:5], round(row[5], 6), round(row[6], 6)) for row in rollups(socket, Resolution.MINUTE) + rollups(socket, Resolution.HOUR)]

    assert comparable(plug_history) == comparable(reference_socket)
    assert not EnergySample.objects.filter(taken_at__lt=retention_cutoff()).exists()


def test_periods_instances_and_the_ledger_are_never_deleted(settings):
    history = make_history()
    settings.SMARTSOCKET_SAMPLE_RETENTION_DAYS = 0.001  # everything is old
    counts = (PowerPeriod.objects.count(), Instance.objects.count(), Event.objects.count())
    samples_roll_up()
    assert not EnergySample.objects.filter(socket=history.socket).exists()
    assert (PowerPeriod.objects.count(), Instance.objects.count(), Event.objects.count()) == counts
    assert Instance.objects.get(pk="alpha").energy_consumed_wh == pytest.approx(28.75), "the shares were stored, not derived from samples"


def test_the_beat_task_is_bounded_per_run_and_the_command_shows_progress(plug_history, settings, capsys):
    settings.SMARTSOCKET_ROLLUP_MAX_SAMPLES = 100
    assert roll_up_samples() == 100 and EnergySample.objects.filter(taken_at__lt=retention_cutoff()).count() == 260
    call_command("roll_up_samples")
    out = capsys.readouterr().out
    assert "260 samples in 1 batches" in out and "260 samples rolled up and deleted" in out


def test_the_api_serves_the_rollups_with_clear_errors(plug_history, api):
    samples_roll_up()
    page = api.get("/api/sockets/bench/rollups", {"resolution": "hour"}).json()
    assert page["count"] == 2 and page["results"][0]["bucketStart"].startswith("2026-01-05T08:00") and page["results"][0]["samples"] == 180
    since = api.get("/api/sockets/bench/rollups", {"since": "2026-01-05T09:30:00Z", "limit": 5}).json()
    assert since["count"] == 30 and since["results"][0]["bucketStart"].startswith("2026-01-05T09:30")
    bad = api.get("/api/sockets/bench/rollups", {"resolution": "week"})
    assert bad.status_code == 422 and "resolution" in bad.json()["fields"]
    assert api.get("/api/sockets/nope/rollups").status_code == 404


def test_the_chart_draws_old_ranges_from_the_rollups(plug_history, admin_client):
    samples_roll_up()
    page = admin_client.get(f"/admin/sockets/socket/{plug_history.pk}/change/",
                            {"since": "2026-01-05T08:00", "until": "2026-01-05T10:00"}).content.decode()
    assert "<polyline" in page and "360 readings" in page
    kwh = float(page.split('<strong class="energy">')[1].split(" kWh")[0])
    assert kwh == pytest.approx(0.1795, abs=0.0006), "359 increases of 0.5 Wh, the reset included"


MILLION = 1_000_000
STEP_S = 5
GROWTH_BOUND = 64 * 1024 * 1024  # one batch of 10,000 rows and its rollups is a few MiB; the backlog as rows would be ≈ 500 MiB


class ResidentPeak:
    """The process's resident memory sampled every 20 ms in a thread (no tracing overhead): its peak above the start."""

    def __init__(self):
        self.start = self.peak = self._resident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @staticmethod
    def _resident() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._resident())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._resident())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def insert_samples(socket: Socket, count: int, start: datetime) -> None:
    """`count` readings every 5 s at 360 W (0.5 Wh each), written by the database itself."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "INSERT INTO sockets_energysample (socket_id, taken_at, is_on, power_w, apparent_power_va, reactive_power_var, power_factor,"
                " voltage_v, current_a, today_kwh, total_kwh) SELECT %s, %s + i * interval '5 seconds', true, 360 + i %% 3, 0, 0, 1, 230,"
                " 1.5 + (i %% 3) / 100.0, 0, 10 + i * 0.0005 FROM generate_series(0, %s) AS i", [socket.pk, start, count - 1])
        else:
            cursor.execute(
                "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < %s) INSERT INTO sockets_energysample"
                " (socket_id, taken_at, is_on, power_w, apparent_power_va, reactive_power_var, power_factor, voltage_v, current_a, today_kwh,"
                " total_kwh) SELECT %s, datetime(%s, '+' || (i * 5) || ' seconds'), 1, 360 + i %% 3, 0, 0, 1, 230, 1.5 + (i %% 3) / 100.0, 0,"
                " 10 + i * 0.0005 FROM seq", [count - 1, socket.pk, start.strftime("%Y-%m-%d %H:%M:%S")])


def test_a_million_samples_roll_up_in_bounded_memory_and_time_and_the_chart_still_draws(admin_client):
    socket = socket_create(name="million", address="http://127.0.0.1:9")
    start = datetime(2025, 6, 1, tzinfo=UTC)  # 1,000,000 readings every 5 s: 58 days, all older than the retention
    insert_samples(socket, MILLION, start)

    gc.collect()
    began = time.monotonic()
    with ResidentPeak() as memory:
        done = samples_roll_up()
    seconds = time.monotonic() - began
    print(f"rolled up {done.samples} samples in {done.batches} batches, {seconds:.1f} s, resident memory grew {memory.growth / 2**20:.1f} MiB")

    assert done.samples == MILLION and not EnergySample.objects.filter(socket=socket).exists()
    assert memory.growth < GROWTH_BOUND, "bounded by the batch, not by the backlog"
    assert seconds < 120
    hours = EnergyRollup.objects.filter(socket=socket, resolution=Resolution.HOUR)
    assert hours.count() == 1389 and sum(hours.values_list("samples", flat=True)) == MILLION
    assert sum(hours.values_list("energy_wh", flat=True)) == pytest.approx((MILLION - 1) * 0.5, rel=1e-6)
    minute = EnergyRollup.objects.get(socket=socket, resolution=Resolution.MINUTE, bucket_start=start + timedelta(hours=1))
    assert (minute.samples, minute.min_w, minute.max_w, minute.mean_w) == (12, 360.0, 362.0, 361.0)

    page = admin_client.get(f"/admin/sockets/socket/{socket.pk}/change/").content.decode()  # the default range: the last week of readings
    assert "<polyline" in page
    page = admin_client.get(f"/admin/sockets/socket/{socket.pk}/change/", {"since": "2025-06-01T00:00", "until": "2025-07-29T00:00"}).content.decode()
    assert "<polyline" in page and f"{MILLION} readings" in page
    kwh = float(page.split('<strong class="energy">')[1].split(" kWh")[0])
    assert kwh == pytest.approx((MILLION - 1) * 0.5 / 1000, rel=1e-3), "58 days of energy from the hourly rollups"


def test_a_report_of_a_run_older_than_the_retention_reads_its_minutes(api, settings):
    history = make_history()
    settings.SMARTSOCKET_SAMPLE_RETENTION_DAYS = 0.001
    samples_roll_up()
    state = json.loads(b"".join(api.get("/api/download", {"socket": "mixer"}).streaming_content))
    alpha = state["instances"]["alpha"]
    assert alpha["energyConsumedWh"] == 28.75 and alpha["socketEnergyWh"] == 38.333, "stored on the instance"
    assert len(alpha["amperagePerSecond"]) == 21 and max(alpha["amperagePerSecond"]) == 0.5, "one figure a minute, 09:00 … 09:20"
    single = api.get("/api/instance/alpha").json()["instance"]
    assert single["amperagePerSecond"] == alpha["amperagePerSecond"]
    assert history.socket.samples.count() == 0
