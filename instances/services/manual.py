"""The relay as the plug has it: monitoring, hands on the plug, and the must-be-OFF watch.

A plug switched OFF by hand ends its running instances (reason manual); a plug switched
ON while it must be OFF (nobody holds it, or it is emergency-locked) is recorded and
switched OFF again (DESIGN §6.3). Both are decided here, under the socket lock, from a
fresh read of the relay.
"""
import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field

from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from audit.ledger import ledger_atomic
from sockets.drivers import SWITCHED_BY_COMMAND, SWITCHED_BY_TIMER
from sockets.models import MANUAL, UNHELD, PowerCause, PowerState, Socket
from sockets.services import (
    Observation,
    OffRelay,
    SocketBusy,
    SocketPoll,
    power_period_open,
    recording_device_faults,
    socket_failsafe_is_wrong,
    socket_failsafe_supported,
    socket_is_settled,
    socket_lock,
    socket_mark_seen,
    socket_changes_batched,
    socket_claim_monitoring,
    socket_claim_monitoring_batch,
    socket_claim_watch,
    socket_observe,
    socket_record_observation,
    socket_release_claim,
    socket_release_watch,
    socket_power_off,
    socket_read_relay,
    socket_read_switch,
    socket_reconcile,
    socket_set_failsafe_target,
)

from ..models import StopReason
from ..selectors import failsafe_target, instance_list_running, socket_must_be_off
from .energy import energy_holders, holders_share_energy
from .holders import instances_stop, socket_rearm_failsafe

# An OFF this close to the armed timer's end (or after it) is the timer's, not a hand's.
FAILSAFE_TOLERANCE = timedelta(seconds=1)
# Every power command and query makes a Tasmota publish its state (stat/<topic>/POWER), and the listener stamps a
# message when its network thread reads it: a busy listener can stamp the echo of the service's own command (the
# OFF of a last stop, read after the next start's ON) later than the service saw the device. A push this soon after
# the service's last look is re-read, not taken as it is — a blip by hand that soon after a command is not caught.
PUSH_ECHO = timedelta(seconds=1)

logger = logging.getLogger(__name__)


class RelayChange:
    """What a fresh read of the relay under the lock found (socket_follow_relay)."""

    MANUAL_OFF = "manual_off"  # switched OFF by hand while held: the holders ended as manual
    FAILSAFE = "failsafe"  # switched OFF by the plug's own timer: the holders ended as failsafe
    MANUAL_ON = "manual_on"  # switched ON by hand while it must be OFF: recorded, and switched OFF again
    UNHELD_OFF = "unheld_off"  # ON, unsettled, while it must be OFF (a start failed half-way): switched OFF, no manual record
    RECONCILE = "reconcile"  # differs from an unsettled state: reconcile's to settle


@dataclass(frozen=True)
class MonitorResult:
    poll: SocketPoll | None
    change: str | None = None
    stopped_instances: list[str] = field(default_factory=list)


def socket_monitor(*, socket_id: int, queued_until: datetime | None = None) -> MonitorResult:
    """Sample one socket if due; when its relay differs from the database, act on it.

    The device is read without the socket lock (relay and meter in one request; a held plug's
    own off-timer alongside); then one short transaction under the lock stores the sample,
    gives the lease back, shares the interval's energy among the holders and re-arms the
    timer if it is wrong. Only a difference in the relay takes the lock again, for a fresh read.
    """
    observation = _socket_claim_and_look(socket_id=socket_id, queued_until=queued_until)
    if observation is None:
        return MonitorResult(poll=None)
    return _socket_follow_poll(poll=_socket_record_sample(socket_id=socket_id, observation=observation))


def socket_monitor_many(*, socket_ids: list[int], queued_until: datetime | None = None) -> int:
    """socket_monitor() of a batch: the sockets claimed together, their devices read at once, each in a thread of
    its own, so a dead plug delays no other; each sample is stored by this thread as soon as its read is back.
    What would make this thread wait goes to a thread of its own instead: a socket locked at the claim or at the
    store (a start or stop under way) waits there for the lock, as socket_monitor() does, and a relay that
    differs is followed up there. Returns how many were sampled; a failure is logged."""
    try:
        claimed, others = socket_claim_monitoring_batch(socket_ids=socket_ids, queued_until=queued_until)
    except DatabaseError:
        logger.exception("monitor: claiming a batch failed; claiming its sockets one by one")
        close_old_connections()  # a lost connection is replaced before this thread stores anything
        claimed, others = [], socket_ids
    looks = {_samplers.submit(_in_thread, _socket_look, socket=socket): socket.pk for socket in claimed}
    looks.update({_waiters.submit(_in_thread, _socket_claim_and_look, socket_id=pk, queued_until=queued_until): pk for pk in others})
    sampled, later = 0, {}
    for look in as_completed(looks):
        socket_id = looks[look]
        try:
            observation = look.result()
            if observation is None:
                continue  # not due, or leased elsewhere
            poll = _socket_record_sample(socket_id=socket_id, observation=observation, wait=False)
        except Exception:
            logger.exception("monitor: socket id %s failed", socket_id)
            continue
        if poll is None:  # its lock is held: stored by a thread that waits for it, then followed up there
            later[_waiters.submit(_in_thread, _socket_record_and_follow, socket_id=socket_id, observation=observation)] = (socket_id, True)
            continue
        sampled += 1
        if poll.differs:
            later[_waiters.submit(_in_thread, _socket_follow_poll, poll=poll)] = (socket_id, False)
    for task, (socket_id, stored_there) in later.items():
        try:
            task.result()
            sampled += stored_there
        except Exception:
            logger.exception("monitor: socket id %s failed", socket_id)
    return sampled


def _socket_look(*, socket: Socket) -> Observation:
    """Read a claimed socket's device (socket_observe): a held plug's timer alongside."""
    return socket_observe(socket=socket, timer=socket.desired_power == PowerState.ON)


def _socket_claim_and_look(*, socket_id: int, queued_until: datetime | None) -> Observation | None:
    claimed = socket_claim_monitoring(socket_id=socket_id, queued_until=queued_until)
    return None if claimed is None else _socket_look(socket=claimed)


def _socket_record_sample(*, socket_id: int, observation: Observation, wait: bool = True) -> SocketPoll | None:
    """Store what a look at a claimed socket found, in one short transaction under the lock: the sample, the lease
    given back, the interval's energy shared among the holders, the timer re-armed if it is wrong. None when not
    `wait` and the lock is held (nothing stored, the lease kept). A failure gives the lease back, so the next tick
    samples the socket again."""
    try:
        with ledger_atomic():
            socket = socket_lock(socket_id=socket_id, nowait=not wait)
            with socket_changes_batched(socket=socket):
                poll = socket_record_observation(socket=socket, observation=observation)
                if poll.power is not None:  # a sample was stored: share its interval among the holders
                    running = list(instance_list_running(socket=socket))
                    holders_share_energy(socket=socket, holders=energy_holders(socket=socket, running=running))
                    if poll.power == PowerState.ON and not poll.differs and observation.timer is not None:
                        _socket_refresh_failsafe(socket=socket, running=running, remaining=observation.timer)
    except SocketBusy:
        return None
    except BaseException:
        socket_release_claim(socket_id=socket_id, lease=observation.lease)
        raise
    return poll


def _socket_record_and_follow(*, socket_id: int, observation: Observation) -> MonitorResult:
    return _socket_follow_poll(poll=_socket_record_sample(socket_id=socket_id, observation=observation))


def _socket_follow_poll(*, poll: SocketPoll) -> MonitorResult:
    """A relay found unlike the database is read again under the lock and followed (socket_follow_relay)."""
    change, stopped = None, []
    if poll.differs:
        change, stopped = socket_follow_relay(socket_id=poll.socket_id)
        if change == RelayChange.RECONCILE:
            socket_reconcile(socket_id=poll.socket_id, force=True)
    return MonitorResult(poll=poll, change=change, stopped_instances=stopped)


def _in_thread(function, /, **kwargs):
    """Run `function` in a pool thread that may use the database: its connection is then treated as a request's
    end would (CONN_MAX_AGE, health checks)."""
    try:
        return function(**kwargs)
    finally:
        close_old_connections()


# Device reads, for every batch a worker process runs at once (a thread-pool worker runs up to 8); and, apart, what
# waits for a socket's lock or follows a changed relay, so waiting for locks never takes the threads reads need.
READ_THREADS, WAIT_THREADS = settings.SMARTSOCKET_MONITOR_BATCH * 8, settings.SMARTSOCKET_MONITOR_BATCH
_samplers = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="monitor")
_waiters = ThreadPoolExecutor(max_workers=WAIT_THREADS, thread_name_prefix="monitor-wait")
# The must-be-OFF watch's (safety work): reads, for every batch a safety worker runs at once; apart, the switching
# OFF of a relay found ON, so that never queues behind other batches' reads.
WATCH_READ_THREADS, WATCH_SWITCH_THREADS = 64, 16
_watch_reads = ThreadPoolExecutor(max_workers=WATCH_READ_THREADS, thread_name_prefix="watch")
_watch_switches = ThreadPoolExecutor(max_workers=WATCH_SWITCH_THREADS, thread_name_prefix="watch-switch")
WATCH_FIRST_RELEASE = timedelta(milliseconds=250)  # a batch's reads from live plugs are back long before


def socket_monitor_connections_close() -> None:
    """Close the database connection each batch thread keeps open between batches (CONN_MAX_AGE), all at once,
    while no batch runs: for a test database about to be dropped."""
    for pool, threads in ((_samplers, READ_THREADS), (_waiters, WAIT_THREADS), (_watch_reads, WATCH_READ_THREADS),
                          (_watch_switches, WATCH_SWITCH_THREADS)):
        together = threading.Barrier(threads, timeout=10)

        def close(_, together=together) -> None:
            together.wait()  # every thread of the pool takes one, so each closes its own
            connection.close()

        list(pool.map(close, range(threads)))


def _socket_refresh_failsafe(*, socket: Socket, running: list, remaining: float) -> bool:
    """On every monitoring pass of a held ON plug, its own off-timer (read alongside the sample: nothing saved on the
    device) is re-armed only when it is wrong: it would end early (a reboot, drift), runs while no timer is wanted (a
    holder without deadline, the failsafe turned off), outlives the holders by more than a little (after a stop),
    or a target beyond the device's range has used up half the range. Requires the lock. True when re-armed."""
    if not running or socket.desired_power != PowerState.ON:
        return False  # the must-be-OFF watch's
    target = failsafe_target(running=running) if socket_failsafe_supported(socket=socket) else None
    socket_set_failsafe_target(socket=socket, until=target)
    if not socket_failsafe_is_wrong(socket=socket, remaining=remaining):
        return False
    return socket_rearm_failsafe(socket=socket, force=True)


def socket_watch_many(*, socket_ids: list[int]) -> dict[int, str | None]:
    """The must-be-OFF watch of a batch: the due sockets claimed together (socket_claim_watch), each relay read with
    one cheap query, all at once, each in a thread of its own; a relay found ON is switched OFF again in a thread of
    its own (it waits for the socket's lock) as soon as its read is back, or WATCH_FIRST_RELEASE after the batch
    began when another read is still out. The sockets read by then are given back then too, so a dead plug holds
    up no other's next check. The threads are the watch's own: sampling never holds them up. A batch of one runs
    in this thread. Returns, for each socket found ON, the RelayChange acted on; a failure is logged."""
    claimed_at = timezone.now()
    claimed = socket_claim_watch(socket_ids=socket_ids)
    if not claimed:
        return {}
    lease = claimed[0].watch_next_at
    if len(claimed) == 1:
        checked = {claimed[0].pk: _socket_watch_read(socket=claimed[0])}
        socket_release_watch(checked=checked, claimed_at=claimed_at, lease=lease)
        return {pk: _socket_watch_follow(socket_id=pk) for pk, on in checked.items() if on}
    reads = {_watch_reads.submit(_in_thread, _socket_watch_read, socket=socket): socket.pk for socket in claimed}
    follows = {}
    first, late = wait(reads, timeout=WATCH_FIRST_RELEASE.total_seconds())
    for group in (first, as_completed(late)):
        checked = {}
        for read in group:
            socket_id = reads[read]
            checked[socket_id] = read.result()
            if checked[socket_id]:
                follows[_watch_switches.submit(_in_thread, _socket_watch_follow, socket_id=socket_id)] = socket_id
        socket_release_watch(checked=checked, claimed_at=claimed_at, lease=lease)
    changes = {}
    for follow, socket_id in follows.items():
        try:
            changes[socket_id] = follow.result()
        except Exception:
            logger.exception("watch: socket id %s failed", socket_id)
    return changes


def _socket_watch_read(*, socket: Socket) -> bool | None:
    """The watch's relay query (socket_read_relay, quick); None when the device did not answer, or the read failed."""
    try:
        return socket_read_relay(socket=socket, quick=True)
    except Exception:
        logger.exception("watch: reading %s failed", socket.name)
        return None


def _socket_watch_follow(*, socket_id: int) -> str | None:
    """A relay the watch found ON: re-read under the lock and switched OFF again (socket_follow_relay)."""
    change, _ = socket_follow_relay(socket_id=socket_id)
    if change == RelayChange.RECONCILE:
        socket_reconcile(socket_id=socket_id, force=True)
    return change


def socket_follow_relay(*, socket_id: int, pushed: tuple[bool, datetime] | None = None, went_off: bool = False) -> tuple[str | None, list[str]]:
    """Re-read the relay under the socket lock and act on how it differs from the database.

    `pushed`: the state the device published and when it arrived (the MQTT listener); taken as it is
    or re-read as _push_taken_as_is() says — taken, an OFF→ON blip shorter than a re-read is still two changes.
    `went_off`: the device said its relay went OFF (a Shelly's switch.off webhook) — a hint only, as
    the call may come late, after the service's own OFF and a new ON; but a relay re-read ON, held,
    and last switched by neither a command nor its timer (a hand, says the device) went OFF and back
    ON by hand since the service switched it: a blip, followed as its two changes.

    ON while the socket must be OFF → switched OFF again (recorded as a `<manual>` period
    when a hand switched it from a settled OFF). OFF by hand from a settled ON while held →
    the holders end with reason manual and the period closes as `<manual>`. Any other
    difference comes from an unsettled state (a failed command, an outage, a restart) and is
    reconcile's (RECONCILE, left to the caller). Returns the RelayChange (None: no
    difference, or the device did not answer) and the ids of the instances stopped.
    """
    with recording_device_faults(), ledger_atomic():
        socket = socket_lock(socket_id=socket_id)
        at = None  # when it happened: a pushed state as it arrived; a read, now
        if pushed is not None and _push_taken_as_is(socket=socket, on=pushed[0], at=pushed[1]):
            (on, at), switched_by = pushed, None
        else:
            read = socket_read_switch(socket=socket)
            if read is None:
                return None, []
            on, switched_by = read
        running = list(instance_list_running(socket=socket).select_related("socket"))
        if (on and went_off and running and switched_by not in (None, SWITCHED_BY_COMMAND, SWITCHED_BY_TIMER)
                and socket.observed_power == PowerState.ON and socket_is_settled(socket=socket)):
            # The device's word is about the ON; nobody says who made the OFF before it: judged by time, as on a Tasmota.
            armed, off_at = socket.failsafe_expires_at, timezone.now()
            change, stopped = _socket_follow_off(socket=socket, running=running, switched_by=None)
            _socket_switch_off_unheld(socket=socket)  # the hand's ON, on a plug nobody holds now: recorded, switched OFF
            if change == RelayChange.FAILSAFE:  # the alarm outlives the switch-off's success
                Socket.objects.filter(pk=socket.pk).update(last_error=_failsafe_message(armed=armed, off_at=off_at))
            logger.info("%s: OFF and back ON (switched ON by %r, says the device)", socket.name, switched_by)
            return change, stopped
        if on and socket_must_be_off(socket=socket, running=running):
            return _socket_switch_off_unheld(socket=socket, at=at), []
        power = PowerState.ON if on else PowerState.OFF
        if power == socket.observed_power:
            return None, []
        if not on and running and socket_is_settled(socket=socket):
            return _socket_follow_off(socket=socket, running=running, switched_by=switched_by, at=at)
        socket_mark_seen(socket=socket, observed=power)  # what reconcile must start from
        return RelayChange.RECONCILE, []


def _push_taken_as_is(*, socket: Socket, on: bool, at: datetime) -> bool:
    """A pushed state newer than anything the database has seen of the device is taken as it is when it is what
    the database has (nothing to re-read: the echo of a re-read ends there) or came more than PUSH_ECHO later;
    a change sooner may be the late-read echo of the service's own command, an older one is stale: re-read."""
    seen = socket.last_seen_at
    if seen is None:
        return True
    same = socket.observed_power == (PowerState.ON if on else PowerState.OFF)
    return at > seen and (same or at > seen + PUSH_ECHO)


def _socket_follow_off(*, socket: Socket, running: list, switched_by: str | None, at: datetime | None = None) -> tuple[str, list[str]]:
    """The relay went OFF under its holders (`at`, if pushed; else now): the plug's own timer or a hand. Requires the lock.

    A device that says who switched it (`switched_by`, Shelly's `source`) is taken at its word: its timer
    (`timer`) or anything else (a press, another client); one that does not (Tasmota) had its timer
    fire when the armed timer was due then (FAILSAFE_TOLERANCE), else a hand switched it.
    """
    armed, when_off = socket.failsafe_expires_at, at or timezone.now()
    if switched_by is not None:
        fired = switched_by == SWITCHED_BY_TIMER
    else:
        fired = armed is not None and when_off >= armed - FAILSAFE_TOLERANCE
    reason, change = (StopReason.FAILSAFE, RelayChange.FAILSAFE) if fired else (StopReason.MANUAL, RelayChange.MANUAL_OFF)
    instances_stop(socket=socket, instances=running, reason=reason, relay=OffRelay.ALREADY_OFF, at=at)
    ids = [instance.pk for instance in running]
    by = f" (switched by {switched_by!r}, says the device)" if switched_by is not None else ""
    if fired:
        message = _failsafe_message(armed=armed, off_at=when_off)
        Socket.objects.filter(pk=socket.pk).update(last_error=message)
        logger.error("%s: %s; instances %s ended (failsafe)%s", socket.name, message, ids, by)
    else:
        logger.info("monitor: %s switched OFF by hand%s; instances %s stopped", socket.name, by, ids)
    return change, ids


def _failsafe_message(*, armed: datetime | None, off_at: datetime) -> str:
    """The socket's last error when its plug's own timer switched it OFF under holders (an alarm: the service was late)."""
    if armed is not None and off_at >= armed - FAILSAFE_TOLERANCE:
        return f"the plug's own off-timer switched it OFF at {armed:%Y-%m-%d %H:%M:%S} UTC: the service missed the deadline"
    # the device says its timer did it, before any the service set ran out
    return "the plug's own off-timer switched it OFF before the timer the service set: a timer set on the device itself?"


def _socket_switch_off_unheld(*, socket: Socket, at: datetime | None = None) -> str:
    """The relay is ON while the socket must be OFF (since `at`, if pushed): record a hand's ON, switch it OFF again.
    Requires the lock.

    The period closes in the name of a pending OFF's decider (`<timeout>` after an outage),
    else of `<emergency>` (locked) or `<unheld>` (nobody holds it).
    """
    by_hand = socket_is_settled(socket=socket) and socket.observed_power == PowerState.OFF
    if by_hand:
        power_period_open(socket=socket, by=MANUAL, cause=PowerCause.MANUAL, at=at)
    if not by_hand and socket.desired_power == PowerState.OFF and socket.desired_by:  # a pending OFF: in its decider's name
        by, cause = socket.desired_by, socket.desired_cause or PowerCause.UNHELD
    elif socket.is_emergency_stopped:
        by, cause = "<emergency>", PowerCause.EMERGENCY
    else:
        by, cause = UNHELD, PowerCause.UNHELD
    error = socket_power_off(socket=socket, by=by, cause=cause, relay=OffRelay.SWITCH_OR_LEAVE)
    logger.info("watch: %s was ON%s with nobody holding it; switched OFF%s", socket.name, " by hand" if by_hand else "",
                f" failed, reconcile retries: {error}" if error else "")
    return RelayChange.MANUAL_ON if by_hand else RelayChange.UNHELD_OFF
