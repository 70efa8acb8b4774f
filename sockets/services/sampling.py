"""Sampling: the meter read on a fixed interval (each socket on a grid of its own phase), and the cheap relay
check of sockets that must be OFF.

Both read the device without the socket lock, under a lease taken by a conditional
UPDATE (a batch's in one short transaction), so no two workers poll one socket at once and
a dead plug delays no other; what a sample read is then stored in one short transaction
under the lock.
"""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..drivers import DeviceError, EnergyReading
from ..models import EnergySample, PowerState, Socket
from ..selectors import socket_list_due_for_sample
from smartsocket_site.operations import event_count

from .power import (
    device_call_bound, device_error_kind, socket_driver, socket_next_sample_at, socket_read_failsafe_alongside,
    socket_record_reachability, socket_sample_interval, socket_save_fields,
)

logger = logging.getLogger(__name__)
POWER_LOSS_CHECK = timedelta(hours=1)
BATCH_SPAN = timedelta(milliseconds=200)  # how late a batch may sample its first socket, waiting for its last


@dataclass(frozen=True)
class SocketPoll:
    """What one poll saw: the relay (None if unreachable) and whether it differs from the database."""

    socket_id: int
    power: str | None
    differs: bool


def energy_sample_record(*, socket: Socket, reading: EnergyReading, is_on: bool | None = None, taken_at: datetime | None = None,
                         relay_known: bool = True) -> EnergySample:
    """Store a reading, with the relay state read with it (else the one last confirmed for the socket; none when not `relay_known`)."""
    if is_on is None and relay_known:
        is_on = {PowerState.ON: True, PowerState.OFF: False}.get(socket.observed_power)
    return EnergySample.objects.create(
        socket=socket,
        taken_at=taken_at or timezone.now(),
        is_on=is_on,
        power_w=reading.power_w,
        apparent_power_va=reading.apparent_power_va,
        reactive_power_var=reading.reactive_power_var,
        power_factor=reading.power_factor,
        voltage_v=reading.voltage_v,
        current_a=reading.current_a,
        today_kwh=reading.today_kwh,
        total_kwh=reading.total_kwh,
    )


def socket_queue_monitoring(*, now: datetime, ahead: timedelta, queued_for: timedelta) -> tuple[list[tuple[int, datetime]], datetime]:
    """The sockets due for a sample by `now + ahead` (so a task can be queued to run when each is due, not at the
    next tick), each leased until `now + ahead + queued_for` to that task (one UPDATE), so a worker running behind
    is not handed the same socket again on every tick. Returns (id, due) sorted by due, and the lease the task
    brings back to socket_claim_monitoring(); a task that never runs lets it lapse. A socket whose row is locked
    right now (a start or stop under way, for as long as its device call) is skipped, not waited for (PostgreSQL's
    SKIP LOCKED): the next tick queues it."""
    until = now + ahead
    queued_until = until + queued_for
    with transaction.atomic():
        free = socket_list_due_for_sample(now=until).select_for_update(skip_locked=True, no_key=True).values("pk")
        if not Socket.objects.filter(pk__in=free).update(monitor_claimed_until=queued_until):
            return [], queued_until
    leased = Socket.objects.filter(monitor_claimed_until=queued_until).values_list("pk", "next_sample_at")
    return sorted(((pk, at or now) for pk, at in leased), key=lambda item: item[1]), queued_until


def socket_monitoring_batches(*, due: list[tuple[int, datetime]], size: int, span: timedelta = BATCH_SPAN) -> list[tuple[list[int], datetime]]:
    """The due sockets of socket_queue_monitoring() (sorted by due time) as batches to send, each with when its
    last socket is due (when it is to run): at most `size` sockets each, and none spanning more than `span`, so
    a batch samples its first socket at most `span` after that one was due."""
    batches: list[tuple[list[int], datetime]] = []
    for pk, at in due:
        if batches and len(batches[-1][0]) < size and at - first <= span:
            batches[-1] = (batches[-1][0] + [pk], at)
        else:
            batches.append(([pk], at))
            first = at
    return batches


def socket_claim_monitoring(*, socket_id: int, queued_until: datetime | None = None) -> Socket | None:
    """Take the monitoring lease of a socket whose sample is due, with one conditional UPDATE.

    None when it is not due or another worker holds the lease (HC sendalerts: "another
    worker process got there first"); `queued_until`: the lease socket_queue_monitoring()
    took for this task. The lease outlives a poll, so a crashed worker only delays the
    socket's next sample.
    """
    now = timezone.now()
    claimed = Socket.objects.filter(pk=socket_id).filter(_claimable(now=now, queued_until=queued_until)).update(monitor_claimed_until=_lease(now=now))
    return Socket.objects.get(pk=socket_id) if claimed else None


def socket_claim_monitoring_batch(*, socket_ids: list[int], queued_until: datetime | None = None) -> tuple[list[Socket], list[int]]:
    """socket_claim_monitoring() of a batch in one short transaction: the claimable rows are read and leased
    together (two statements, not two per socket). A row locked right now (a start or stop under way) is skipped,
    not waited for (PostgreSQL's SKIP LOCKED; on SQLite the IMMEDIATE transaction waits for the writer instead).
    Returns the sockets claimed and the ids left (locked, not due, or leased elsewhere), for
    socket_claim_monitoring() one by one."""
    now = timezone.now()
    with transaction.atomic():
        sockets = list(Socket.objects.select_for_update(skip_locked=True, no_key=True).filter(pk__in=socket_ids)
                       .filter(_claimable(now=now, queued_until=queued_until)))
        if sockets:
            lease = _lease(now=now)
            Socket.objects.filter(pk__in=[socket.pk for socket in sockets]).update(monitor_claimed_until=lease)
            for socket in sockets:
                socket.monitor_claimed_until = lease
    taken = {socket.pk for socket in sockets}
    return sockets, [pk for pk in socket_ids if pk not in taken]


def _claimable(*, now: datetime, queued_until: datetime | None) -> Q:
    """Due for a sample, and its lease free (none, lapsed, or the one the tick took for this task)."""
    free = Q(monitor_claimed_until=None) | Q(monitor_claimed_until__lt=now)
    if queued_until is not None:
        free |= Q(monitor_claimed_until=queued_until)
    return (Q(next_sample_at=None) | Q(next_sample_at__lte=now)) & free


def _lease(*, now: datetime) -> datetime:
    """A monitoring lease: it outlives a poll's device calls."""
    return now + 2 * device_call_bound() + timedelta(seconds=5)


@dataclass(frozen=True)
class Observation:
    """What one look at a claimed socket's device found (socket_observe); nothing of it is stored yet."""

    on: bool | None  # the relay; None: the device did not answer
    reading: EnergyReading | None
    taken_at: datetime
    timer: float | None = None  # seconds left on the plug's own off-timer, when asked and answered
    after_power_loss: str | None = None  # the setting, when its check was due
    error: str = ""
    lease: datetime | None = None  # the monitoring lease the look was made under


def socket_observe(*, socket: Socket, timer: bool = False) -> Observation:
    """Read a claimed socket's device without the lock and without touching the database: relay and meter in one
    request, its off-timer alongside when `timer` (one round trip for both), the after-power-loss setting when
    its check is due. A dead device costs its driver timeouts; the fault is in `error`."""
    pending = socket_read_failsafe_alongside(socket=socket) if timer else None
    on = reading = after_power_loss = None
    error = ""
    try:
        driver = socket_driver(socket=socket)
        on, reading = driver.read_state()  # relay and meter in one request
        if _socket_power_loss_check_due(socket=socket):
            after_power_loss = driver.read_after_power_loss()
    except DeviceError as exc:
        logger.warning("monitor: %s did not answer (%s): %s", socket.name, device_error_kind(exc), exc)
        event_count(name="device_errors", label=device_error_kind(exc))
        error = str(exc)[:255]
    # Stamped when read: recording may wait for a stop that switches the relay meanwhile.
    return Observation(on=on, reading=reading, taken_at=timezone.now(), timer=pending.result() if pending else None,
                       after_power_loss=after_power_loss, error=error, lease=socket.monitor_claimed_until)


def socket_record_observation(*, socket: Socket, observation: Observation) -> SocketPoll:
    """Store an observation of a claimed socket (its sample) and give the monitoring lease back. Requires the
    socket lock; `differs`: the relay is not where the database (as read under the lock) last saw it. A look whose
    lease lapsed and was taken by another worker meanwhile (a store that waited long for the lock) stores nothing."""
    if socket.monitor_claimed_until != observation.lease:
        logger.warning("monitor: %s: the lease lapsed before the sample was stored; not stored", socket.name)
        return SocketPoll(socket_id=socket.pk, power=None, differs=False)
    if observation.on is not None:
        energy_sample_record(socket=socket, reading=observation.reading, is_on=observation.on, taken_at=observation.taken_at)
    power = None if observation.on is None else PowerState.ON if observation.on else PowerState.OFF
    differs = power is not None and power != socket.observed_power
    _socket_release_monitoring(socket=socket, on=observation.on, error=observation.error or "monitoring failed",
                               after_power_loss=observation.after_power_loss, read_at=observation.taken_at)
    return SocketPoll(socket_id=socket.pk, power=power, differs=differs)


def socket_release_claim(*, socket_id: int, lease: datetime | None) -> None:
    """Give a monitoring lease back unused (recording failed), unless another worker holds the socket's lease by
    now: the next tick samples the socket again."""
    Socket.objects.filter(pk=socket_id, monitor_claimed_until=lease).update(monitor_claimed_until=None)


def _socket_power_loss_check_due(*, socket: Socket) -> bool:
    """What the plug does after a mains outage is read once, then every POWER_LOSS_CHECK (it is a saved setting)."""
    checked = socket.after_power_loss_checked_at
    return checked is None or timezone.now() - checked > POWER_LOSS_CHECK


def _socket_release_monitoring(*, socket: Socket, on: bool | None, error: str, after_power_loss: str | None = None,
                               read_at: datetime) -> None:
    """Give the lease back and set when the next sample is due: the socket's next grid time after the device was
    read (socket_next_sample_at), so a sample stored late is followed by the next one on time, or at once when that
    time has passed meanwhile; record online or offline (requires the lock)."""
    now = timezone.now()
    interval = socket_sample_interval(socket=socket, on=on if on is not None else socket.desired_power == PowerState.ON)
    fields = {"monitor_claimed_until": None, "next_sample_at": socket_next_sample_at(socket_id=socket.pk, after=read_at, interval=interval)}
    if on is None:
        fields.update(observed_power=PowerState.UNKNOWN, is_online=False, last_error=error)
    else:
        fields.update(is_online=True, last_seen_at=now, last_error="")
    socket_record_reachability(socket=socket, online=on is not None, error="" if on is not None else error)
    if after_power_loss is not None:
        fields.update(after_power_loss=after_power_loss, after_power_loss_checked_at=now)
    for name, value in fields.items():
        setattr(socket, name, value)
    socket_save_fields(socket=socket, fields=list(fields))


def socket_claim_watch(*, socket_ids: list[int]) -> list[Socket]:
    """The must-be-OFF watch's claim of a batch: those of `socket_ids` whose relay check is due, leased together in one
    short transaction until a check must have ended (`watch_next_at`), so no two workers check a socket at once. A
    socket whose row is locked right now (a start or stop under way: it is being switched) is skipped, not waited
    for (PostgreSQL's SKIP LOCKED); the next tick brings it again. The caller picks the sockets (those that must be
    OFF), reads each relay with one cheap query, gives the batch back with socket_release_watch(), and switches a
    relay found ON OFF again under the lock."""
    now = timezone.now()
    lease = now + device_call_bound() + timedelta(seconds=settings.SMARTSOCKET_OFF_WATCH_INTERVAL)
    with transaction.atomic():
        due = Socket.objects.filter(pk__in=socket_ids).filter(Q(watch_next_at=None) | Q(watch_next_at__lte=now))
        if not Socket.objects.filter(pk__in=due.select_for_update(skip_locked=True, no_key=True).values("pk")).update(watch_next_at=lease):
            return []
        return list(Socket.objects.filter(pk__in=socket_ids, watch_next_at=lease))


def socket_release_watch(*, checked: dict[int, bool | None], claimed_at: datetime, lease: datetime) -> None:
    """After the checks (socket id → relay, None: no answer) of a batch claimed at `claimed_at`: the next check of a
    relay that answered is due half an interval after the claim, so the next beat tick (which sets the pace) brings
    it again even when its batch ran up to half an interval behind that tick — due after the read instead, a batch
    running late skipped a tick and checked its sockets every 2 s, too late for the 2 s rule; of one that did not
    answer, 2 s after the check at the least (reconcile handles an offline plug). `lease`: the claim's; a socket whose
    lease lapsed and was taken by another worker meanwhile is left to that worker."""
    interval = timedelta(seconds=settings.SMARTSOCKET_OFF_WATCH_INTERVAL)
    for answered, due in ((True, claimed_at + interval / 2), (False, timezone.now() + max(interval, timedelta(seconds=2)))):
        ids = [pk for pk, on in checked.items() if (on is not None) == answered]
        if ids:
            Socket.objects.filter(pk__in=ids, watch_next_at=lease).update(watch_next_at=due)


