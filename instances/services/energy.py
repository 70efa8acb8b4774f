"""Energy per holder: the meter's count over each sample interval shared among the instances that held the plug.

Each interval between two consecutive samples of a socket is cut where a holder started or
stopped; the energy of each piece (the interval's counter delta, spread evenly over its time)
goes in equal parts to the instances holding the plug then (`energy_consumed_wh`), and whole
to each of them (`socket_energy_wh`, the plug's figure over the instance's run). So the shares
of overlapping instances add up to what the meter counted while anyone held it.

The delta comes from the `Total` counter, never `Today`: a counter that went down was reset
(a reboot, a counter cleared), and the energy since the reset is the new value, not negative.

Intervals are shared in order, once: the socket keeps the last sample shared (`energy_shared_*`),
and whoever shares next (each monitoring sample, the last holder's stop) takes every sample
after it, under the socket lock. A sample that was not shared yet (a crash, an instance stopped
between two samples) is shared by the next pass, so an instance stopped without a closing
reading has its figure completed by the next sample (within one sample interval).
"""
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce

from sockets.models import EnergySample, Socket
from sockets.services import socket_save_fields

from ..models import Instance


@dataclass
class Share:
    consumed_wh: float = 0.0  # the instance's share
    socket_wh: float = 0.0  # what the plug counted while it held it


def interval_energy_wh(*, previous_total_kwh: float, total_kwh: float) -> float:
    """The energy counted between two readings of the `Total` counter; a counter that went down was reset."""
    delta = total_kwh - previous_total_kwh
    return (total_kwh if delta < 0 else delta) * 1000


def interval_shares(*, since: datetime, until: datetime, energy_wh: float,
                    holders: list[tuple[str, datetime, datetime | None]]) -> dict[str, Share]:
    """Share `energy_wh`, counted over [since, until], among `holders` (id, started_at, stopped_at or None) by time."""
    span = (until - since).total_seconds()
    if span <= 0 or energy_wh <= 0:
        return {}
    cuts = sorted({since, until, *(at for _, started, stopped in holders for at in (started, stopped) if at and since < at < until)})
    shares: dict[str, Share] = {}
    for start, end in zip(cuts, cuts[1:]):
        present = [pk for pk, started, stopped in holders if started <= start and (stopped is None or stopped >= end)]
        if not present:
            continue  # nobody held the plug: the meter counted, no instance is charged
        piece = energy_wh * (end - start).total_seconds() / span
        for pk in present:
            share = shares.setdefault(pk, Share())
            share.consumed_wh += piece / len(present)
            share.socket_wh += piece
    return shares


def holders_share_energy(*, socket: Socket, known: list[Instance] = (), holders: list[Instance] | None = None,
                         window: tuple[datetime, datetime] | None = None) -> list[float] | None:
    """Share every sample interval of `socket` not shared yet among its holders then (requires the socket lock).

    `known`: instances the caller read under this lock and saves afterwards: their figures are added in
    memory (`energy_consumed_wh`, `socket_energy_wh`), not written here; the others' are added in the database.
    `holders`: every instance that may have held the plug since the last shared sample (the running ones and
    those stopped since `energy_shared_at`, read under this lock), so no query is made per interval.
    `window` (since, until): the same query also fetches the samples stamped in it, whose currents are
    returned (a stopping instance's meter) — None when not asked or more samples came than one query takes.
    """
    shared_id = socket.energy_shared_sample_id
    rows = EnergySample.objects.filter(socket=socket)
    if shared_id is not None:
        rows = rows.filter(Q(pk__gt=shared_id) | Q(taken_at__gte=window[0])) if window else rows.filter(pk__gt=shared_id)
    rows = list(rows.order_by("pk").values_list("pk", "taken_at", "total_kwh", "current_a")[:PENDING_LIMIT])
    currents = None
    if window and len(rows) < PENDING_LIMIT:
        currents = [current for _, taken_at, _, current in sorted(rows, key=lambda row: (row[1], row[0])) if window[0] <= taken_at <= window[1]]
    pending = [row[:3] for row in rows if shared_id is None or row[0] > shared_id]
    if not pending:
        return currents
    marker_at, marker_total = socket.energy_shared_at, socket.energy_shared_total_kwh
    totals: dict[str, Share] = {}
    for _, taken_at, total_kwh in pending:
        if marker_at is None:  # the first sample ever: where sharing starts
            marker_at, marker_total = taken_at, total_kwh
            continue
        if taken_at <= marker_at:
            continue  # stamped before the last shared one (it waited for the lock): the next interval covers it
        energy = interval_energy_wh(previous_total_kwh=marker_total, total_kwh=total_kwh)
        if energy > 0:
            if holders is None:
                over = Instance.objects.filter(socket=socket, started_at__lt=taken_at).filter(Q(stopped_at=None) | Q(stopped_at__gt=marker_at))
                over = list(over.values_list("pk", "started_at", "stopped_at"))
            else:
                over = [(h.pk, h.started_at, h.stopped_at) for h in holders
                        if h.started_at < taken_at and (h.stopped_at is None or h.stopped_at > marker_at)]
            for pk, share in interval_shares(since=marker_at, until=taken_at, energy_wh=energy, holders=over).items():
                total = totals.setdefault(pk, Share())
                total.consumed_wh += share.consumed_wh
                total.socket_wh += share.socket_wh
        marker_at, marker_total = taken_at, total_kwh
    in_memory = {instance.pk: instance for instance in known}
    for pk, share in totals.items():
        instance = in_memory.get(pk)
        if instance is not None:
            instance.energy_consumed_wh = (instance.energy_consumed_wh or 0.0) + share.consumed_wh
            instance.socket_energy_wh = (instance.socket_energy_wh or 0.0) + share.socket_wh
        else:
            Instance.objects.filter(pk=pk).update(
                energy_consumed_wh=Coalesce(F("energy_consumed_wh"), Value(0.0)) + share.consumed_wh,
                socket_energy_wh=Coalesce(F("socket_energy_wh"), Value(0.0)) + share.socket_wh,
            )
    socket.energy_shared_sample_id, socket.energy_shared_at, socket.energy_shared_total_kwh = pending[-1][0], marker_at, marker_total
    socket_save_fields(socket=socket, fields=["energy_shared_sample_id", "energy_shared_at", "energy_shared_total_kwh"])
    return currents


PENDING_LIMIT = 1000  # samples shared per pass; the rest by the next


def energy_holders(*, socket: Socket, running: list[Instance]) -> list[Instance] | None:
    """The instances that held the plug since its last shared sample, when `running` (read under the lock) are all
    of them: no stop since then left its holders' energy unshared. None: holders_share_energy() must look them up."""
    unshared, shared = socket.energy_unshared_stop_at, socket.energy_shared_at
    return running if unshared is None or (shared is not None and unshared <= shared) else None
