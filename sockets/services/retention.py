"""Retention: raw samples older than SMARTSOCKET_SAMPLE_RETENTION_DAYS folded into per-minute and per-hour rollups, then deleted.

A pass takes the oldest samples in bounded batches (flat memory whatever the backlog), each batch
in one transaction: the batch's buckets are merged into their rollup rows (a bucket met again in
the next batch or the next pass is merged, not duplicated), then its samples are deleted. The
energy of a bucket is the counter's increase from the sample before it (the previous bucket's last
reading, kept on the rollup row) with resets counted from zero, as everywhere else.
Periods, instances and the ledger are never touched.
"""
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from ..models import EnergyRollup, EnergySample, Resolution
from ..selectors import retention_cutoff

logger = logging.getLogger(__name__)
BATCH = 10_000
MINUTE, HOUR = Resolution.MINUTE.value, Resolution.HOUR.value


@dataclass
class RollupPass:
    samples: int = 0
    batches: int = 0
    seconds: float = 0.0


def _bucket_start(at: datetime, resolution: str) -> datetime:
    return at.replace(second=0, microsecond=0) if resolution == Resolution.MINUTE else at.replace(minute=0, second=0, microsecond=0)


def samples_roll_up(*, cutoff: datetime | None = None, batch: int = BATCH, max_samples: int | None = None, progress=None) -> RollupPass:
    """Roll up and delete the samples taken before `cutoff` (the retention cutoff), `batch` at a time, at most
    `max_samples` of them (a beat run; the next goes on). `progress(pass)` is called after each batch."""
    cutoff = cutoff or retention_cutoff()
    done = RollupPass()
    started = time.monotonic()
    while max_samples is None or done.samples < max_samples:
        if max_samples is not None:
            batch = min(batch, max_samples - done.samples)
        with transaction.atomic():
            # Locked: a second pass running at once waits, then finds these rows gone (never folds them twice).
            rows = list(
                EnergySample.objects.select_for_update().filter(taken_at__lt=cutoff).order_by("socket_id", "taken_at", "pk")
                .values_list("pk", "socket_id", "taken_at", "power_w", "current_a", "total_kwh")[:batch]
            )
            if not rows:
                break
            _fold(rows=rows)
            _delete(rows=rows, cutoff=cutoff)
        done.samples += len(rows)
        done.batches += 1
        done.seconds = time.monotonic() - started
        if progress is not None:
            progress(done)
    done.seconds = time.monotonic() - started
    if done.samples:
        logger.info("retention: %d samples before %s rolled up in %d batches (%.1f s)", done.samples, cutoff.isoformat(), done.batches, done.seconds)
    return done


def _fold(*, rows: list[tuple]) -> None:
    """Merge one batch (ordered by socket, time) into the rollup rows of its buckets."""
    spans: dict[int, list[datetime]] = {}  # socket -> [first, last] reading time in the batch
    for _, socket_id, taken_at, *_ in rows:
        span = spans.setdefault(socket_id, [taken_at, taken_at])
        span[0], span[1] = min(span[0], taken_at), max(span[1], taken_at)
    existing_rows = EnergyRollup.objects.none()
    for socket_id, (first, last) in spans.items():  # the buckets this batch touches, socket by socket (bounded)
        existing_rows |= EnergyRollup.objects.filter(socket_id=socket_id, bucket_start__lte=last).filter(
            Q(resolution=MINUTE, bucket_start__gte=_bucket_start(first, MINUTE)) | Q(resolution=HOUR, bucket_start__gte=_bucket_start(first, HOUR)))
    touched = {(rollup.socket_id, rollup.resolution, rollup.bucket_start): rollup for rollup in existing_rows}
    old = list(touched.values())  # buckets an earlier batch began: merged into
    new: list[EnergyRollup] = []
    previous = _last_readings(socket_ids=set(spans))  # socket -> (at, total) of the newest reading rolled up
    for _, socket_id, taken_at, watts, amps, total in rows:
        last = previous.get(socket_id)
        increase = 0.0
        if last is not None and taken_at >= last[0]:
            increase = (total if total < last[1] else total - last[1]) * 1000
        previous[socket_id] = (taken_at, total)
        minute = taken_at.replace(second=0, microsecond=0)
        for key in ((socket_id, MINUTE, minute), (socket_id, HOUR, minute.replace(minute=0))):
            rollup = touched.get(key)
            if rollup is None:
                rollup = touched[key] = EnergyRollup(socket_id=socket_id, resolution=key[1], bucket_start=key[2], samples=0, min_w=watts,
                                                     max_w=watts, mean_w=0.0, max_current_a=amps, energy_wh=0.0, last_at=taken_at, last_total_kwh=total)
                new.append(rollup)
            rollup.mean_w = (rollup.mean_w * rollup.samples + watts) / (rollup.samples + 1)
            rollup.samples += 1
            if watts < rollup.min_w:
                rollup.min_w = watts
            if watts > rollup.max_w:
                rollup.max_w = watts
            if amps > rollup.max_current_a:
                rollup.max_current_a = amps
            rollup.energy_wh += increase
            if taken_at >= rollup.last_at:
                rollup.last_at, rollup.last_total_kwh = taken_at, total
    EnergyRollup.objects.bulk_create(new, batch_size=2000)
    EnergyRollup.objects.bulk_update(old, ["samples", "min_w", "max_w", "mean_w", "max_current_a", "energy_wh", "last_at", "last_total_kwh"], batch_size=500)


def _delete(*, rows: list[tuple], cutoff: datetime) -> None:
    """Delete the batch's samples: for every socket but the batch's last, all before the cutoff; for the last,
    up to the batch's last (time, id) — the rows the locked, ordered batch read (no list of ids to send)."""
    sockets = list(dict.fromkeys(row[1] for row in rows))
    _, last_socket, last_at, *_ = rows[-1]
    last_pk = rows[-1][0]
    old = EnergySample.objects.filter(taken_at__lt=cutoff)
    if len(sockets) > 1:
        old.filter(socket_id__in=sockets[:-1]).delete()
    old.filter(socket_id=last_socket).filter(Q(taken_at__lt=last_at) | Q(taken_at=last_at, pk__lte=last_pk)).delete()


def _last_readings(*, socket_ids: set[int]) -> dict[int, tuple[datetime, float]]:
    """Each socket's newest reading already rolled up (from its newest minute bucket)."""
    readings = {}
    for socket_id in socket_ids:
        last = (EnergyRollup.objects.filter(socket_id=socket_id, resolution=Resolution.MINUTE).order_by("-bucket_start")
                .values_list("last_at", "last_total_kwh").first())
        if last is not None:
            readings[socket_id] = last
    return readings
