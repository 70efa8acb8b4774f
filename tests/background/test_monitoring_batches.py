"""Monitoring many plugs (issue 9): the tick queues each due socket once, batches sample every socket with a
dead plug delaying no other, and the simulator serves a fleet from one port."""
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from instances.services import manual
from instances.services.manual import socket_monitor_connections_close
from instances.services import socket_watch_many
from instances.tasks import monitor_socket_batch
from sockets.drivers import DeviceProtocolError, TasmotaHttpDriver
from sockets.models import EnergySample, PowerState, Socket
from sockets.services import socket_claim_monitoring, socket_create, socket_monitoring_batches, socket_observe, socket_queue_monitoring
from sockets.simulator import PlugSimulator, SimulatorServer


@pytest.fixture
def fleet():
    """Four simulated plugs served by one port, at /plug/1 … /plug/4."""
    with SimulatorServer(plugs={str(n): PlugSimulator(load_w=10.0 * n) for n in range(1, 5)}) as server:
        yield server


@pytest.fixture
def fleet_sockets(db, fleet) -> list[Socket]:
    sockets = [socket_create(name=f"fleet-{n}", address=f"{fleet.url}/plug/{n}") for n in range(1, 5)]
    Socket.objects.exclude(pk__in=[socket.pk for socket in sockets]).update(next_sample_at=timezone.now() + timedelta(hours=1))
    return sockets


def fleet_due(at) -> None:
    Socket.objects.filter(name__startswith="fleet-").update(next_sample_at=at)


def test_the_fleet_simulator_serves_each_plug_at_its_own_path(fleet):
    first, second = (TasmotaHttpDriver(address=f"{fleet.url}/plug/{n}") for n in (1, 2))
    assert first.set_power(True) is True
    assert fleet.plugs["1"].is_on and not fleet.plugs["2"].is_on and second.get_power() is False
    assert fleet.plugs["1"].commands == ["Power On"] and fleet.plugs["2"].commands == ["Power"]
    with pytest.raises(DeviceProtocolError, match="HTTP 404"):
        TasmotaHttpDriver(address=f"{fleet.url}/plug/9").get_power()


def test_a_tick_queues_each_due_socket_once_while_its_task_may_still_run(fleet_sockets):
    now = timezone.now()
    fleet_due(now - timedelta(seconds=1))
    due, lease = socket_queue_monitoring(now=now, ahead=timedelta(seconds=1), queued_for=timedelta(seconds=2))
    assert sorted(pk for pk, _ in due) == sorted(socket.pk for socket in fleet_sockets)
    again, _ = socket_queue_monitoring(now=now + timedelta(seconds=1), ahead=timedelta(seconds=1), queued_for=timedelta(seconds=2))
    assert again == [], "a worker running behind is not handed the same sockets on the next tick"
    later, _ = socket_queue_monitoring(now=lease + timedelta(milliseconds=1), ahead=timedelta(seconds=1), queued_for=timedelta(seconds=2))
    assert len(later) == 4, "a task that never ran lets its lease lapse: the sockets are queued again"


def test_a_tick_queues_a_socket_due_before_the_next_tick_with_its_due_time(fleet_sockets):
    now = timezone.now()
    fleet_due(now + timedelta(minutes=1))
    soon = now + timedelta(milliseconds=600)
    Socket.objects.filter(pk=fleet_sockets[2].pk).update(next_sample_at=soon)
    due, _ = socket_queue_monitoring(now=now, ahead=timedelta(seconds=1), queued_for=timedelta(seconds=2))
    assert due == [(fleet_sockets[2].pk, soon)], "sent to run when it is due, not a tick late"


class StartUnderWay:
    """A start or stop under way: another connection holds the socket's row lock until `release` is set (or `hold`
    seconds pass); `released` gets the time it let go. begin() waits until the lock is held; as a context manager,
    the lock is held for the block."""

    def __init__(self, socket: Socket, *, no_key: bool = False, hold: float = 10.0):
        self.socket, self.no_key, self.hold = socket, no_key, hold
        self.locked, self.release, self.released = threading.Event(), threading.Event(), []
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        try:
            with transaction.atomic():
                Socket.objects.select_for_update(no_key=self.no_key).get(pk=self.socket.pk)
                self.locked.set()
                self.release.wait(self.hold)
                self.released.append(timezone.now())
        finally:
            connection.close()

    def begin(self) -> None:
        self.thread.start()
        assert self.locked.wait(5)

    def __enter__(self) -> "StartUnderWay":
        self.begin()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join(self.hold)


@pytest.fixture
def batch_threads():
    """The batch threads' database connections are closed after the test, so the test database can be dropped."""
    yield
    socket_monitor_connections_close()


@pytest.mark.django_db(transaction=True)
def test_a_batch_samples_each_socket_in_a_thread_of_its_own_so_a_dead_plug_delays_no_other(fleet, fleet_sockets, fast_device_timeouts,
                                                                                          batch_threads):
    fleet.plugs["2"].set_fault("timeout")  # hangs every request
    now = timezone.now()
    fleet_due(now)
    due, lease = socket_queue_monitoring(now=now, ahead=timedelta(seconds=1), queued_for=timedelta(seconds=5))
    began = timezone.now()
    started = time.monotonic()
    sampled = monitor_socket_batch([pk for pk, _ in due], lease.isoformat())
    assert time.monotonic() - started < 5, "bounded by the dead plug's timeouts, not their sum"
    assert sampled == 4, "each socket was claimed and looked at"
    for socket in fleet_sockets:
        socket.refresh_from_db()
        assert socket.monitor_claimed_until is None, "every lease given back"
    alive = [socket for n, socket in enumerate(fleet_sockets, start=1) if n != 2]
    for socket in alive:
        sample = EnergySample.objects.get(socket=socket)
        assert (sample.taken_at - began).total_seconds() < 0.4, "not held up by the dead plug's timeout"
        assert socket.is_online and socket.observed_power == PowerState.OFF
    dead = fleet_sockets[1]
    assert not EnergySample.objects.filter(socket=dead).exists() and not dead.is_online and dead.observed_power == PowerState.UNKNOWN


@pytest.mark.django_db(transaction=True)
def test_sockets_due_at_once_spread_over_the_interval_and_then_keep_their_pace(fleet, fleet_sockets, batch_threads):
    """After a restart every socket is due at once; sampled together, they must not stay a burst every interval."""
    Socket.objects.filter(name__startswith="fleet-").update(sample_interval_off=2.0)
    now = timezone.now()
    fleet_due(now)
    due, lease = socket_queue_monitoring(now=now, ahead=timedelta(seconds=1), queued_for=timedelta(seconds=5))
    assert monitor_socket_batch([pk for pk, _ in due], lease.isoformat()) == 4
    first = dict(Socket.objects.filter(name__startswith="fleet-").values_list("pk", "next_sample_at"))
    times = sorted(first.values())
    assert all(0 < (at - now).total_seconds() <= 2.5 for at in times), "each within an interval"
    assert min((b - a).total_seconds() for a, b in zip(times, times[1:])) >= 0.2, f"spread over the interval, not together: {times}"

    time.sleep(max(0.0, (times[-1] - timezone.now()).total_seconds()) + 0.05)  # all due again, the first ones late
    due, lease = socket_queue_monitoring(now=timezone.now(), ahead=timedelta(seconds=1), queued_for=timedelta(seconds=5))
    assert monitor_socket_batch([pk for pk, _ in due], lease.isoformat()) == 4
    for pk, at in Socket.objects.filter(name__startswith="fleet-").values_list("pk", "next_sample_at"):
        assert at > first[pk] and (at - first[pk]) % timedelta(seconds=2) == timedelta(0), "still on its own phase, late or not"


@pytest.mark.django_db(transaction=True)
def test_a_socket_locked_at_the_batch_claim_is_still_sampled_without_holding_up_the_others(fleet, fleet_sockets, batch_threads):
    """A start or stop under way holds the socket's row lock; the batch skips it at the claim and claims it in its
    own thread, which waits for the lock as a single socket's monitoring does."""
    busy = fleet_sockets[2]
    start = StartUnderWay(busy, hold=5)
    now = timezone.now()
    fleet_due(now)
    due, lease = socket_queue_monitoring(now=now, ahead=timedelta(seconds=1), queued_for=timedelta(seconds=5))
    start.begin()
    threading.Timer(1.0, start.release.set).start()
    began = timezone.now()
    sampled = monitor_socket_batch([pk for pk, _ in due], lease.isoformat())
    start.thread.join(5)
    assert sampled == 4, "the locked socket too, once its lock was free"
    busy_sample = EnergySample.objects.get(socket=busy)
    assert (busy_sample.taken_at - began).total_seconds() >= 0.9, "it waited for the start under way"
    for socket in fleet_sockets:
        socket.refresh_from_db()
        assert socket.monitor_claimed_until is None, "every lease given back"
        if socket.pk != busy.pk and connection.vendor == "postgresql":  # SQLite: the claim's IMMEDIATE transaction waits for the writer
            sample = EnergySample.objects.get(socket=socket)
            assert (sample.taken_at - began).total_seconds() < 0.5, "the others were not held up by the locked one"
            assert (socket.last_seen_at - began).total_seconds() < 0.5, "and stored at once"


@pytest.mark.django_db(transaction=True)
def test_a_socket_locked_while_its_plug_is_read_is_stored_once_free_without_holding_up_the_others(fleet, fleet_sockets, batch_threads,
                                                                                                   monkeypatch):
    """The lock taken between the claim and the store (a start arriving while the plug is read): the batch's
    thread does not wait for it; a thread of its own does."""
    busy = fleet_sockets[2]
    for n, plug in fleet.plugs.items():
        plug.latency = 0.0 if n == "3" else 0.3  # the busy one is read first, while the others still answer
    start = StartUnderWay(busy, no_key=True)
    look = manual._socket_look

    def look_then_a_start_arrives(*, socket):
        observation = look(socket=socket)
        if socket.pk == busy.pk:  # claimed and read: now a start takes the lock before the sample is stored
            start.begin()
            threading.Timer(1.5, start.release.set).start()
        return observation

    monkeypatch.setattr(manual, "_socket_look", look_then_a_start_arrives)
    now = timezone.now()
    fleet_due(now)
    due, lease = socket_queue_monitoring(now=now, ahead=timedelta(seconds=1), queued_for=timedelta(seconds=5))
    assert monitor_socket_batch([pk for pk, _ in due], lease.isoformat()) == 4
    start.thread.join(10)
    released = start.released
    assert released, "the start under way held the lock and let go"
    for socket in fleet_sockets:
        socket.refresh_from_db()
        assert socket.monitor_claimed_until is None and socket.is_online
        if socket.pk == busy.pk:
            assert socket.last_seen_at >= released[0], "stored once the start under way let go"
            sample = EnergySample.objects.get(socket=busy)
            assert sample.taken_at < released[0] - timedelta(seconds=1), "stamped when read, not when stored"
        elif connection.vendor == "postgresql":  # SQLite: the lock is the database's, every store waits for it
            assert socket.last_seen_at < released[0], "the others were stored as their reads came back"


def test_batches_are_cut_so_none_samples_its_first_socket_long_after_it_was_due():
    start = timezone.now()
    due = [(n, start + timedelta(milliseconds=at)) for n, at in enumerate([0, 50, 150, 250, 260, 270, 280, 290, 900])]
    batches = socket_monitoring_batches(due=due, size=4)
    assert [ids for ids, _ in batches] == [[0, 1, 2], [3, 4, 5, 6], [7], [8]], "at most 200 ms from first to last, and 4 each"
    assert [last for _, last in batches] == [due[2][1], due[6][1], due[7][1], due[8][1]], "each to run when its last is due"


@pytest.mark.django_db(transaction=True)
def test_a_look_whose_lease_lapsed_and_was_taken_stores_nothing_and_frees_nothing(fleet, fleet_sockets):
    """A store that waited longer than its lease (a start held the lock) must not write over the next worker's."""
    socket = fleet_sockets[0]
    fleet_due(timezone.now())
    claimed = socket_claim_monitoring(socket_id=socket.pk)
    observation = socket_observe(socket=claimed)
    later = timezone.now() + timedelta(minutes=5)
    Socket.objects.filter(pk=socket.pk).update(monitor_claimed_until=later)  # lapsed, and claimed by another worker
    assert manual._socket_record_sample(socket_id=socket.pk, observation=observation).power is None
    socket.refresh_from_db()
    assert socket.monitor_claimed_until == later, "the other worker's lease is kept"
    assert not EnergySample.objects.filter(socket=socket).exists()


@pytest.mark.django_db(transaction=True)
def test_a_tick_does_not_wait_for_a_socket_locked_by_a_start_under_way(fleet_sockets):
    """A start or stop holds its socket's row lock for its device call; the tick queues the other due sockets at
    once and leaves the locked one to a later tick (PostgreSQL's SKIP LOCKED; SQLite has no row locks)."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    busy = fleet_sockets[1]
    now = timezone.now()
    fleet_due(now)
    with StartUnderWay(busy):
        began = time.monotonic()
        due, lease = socket_queue_monitoring(now=now, ahead=timedelta(seconds=1), queued_for=timedelta(seconds=5))
        waited = time.monotonic() - began
    assert waited < 1.0, f"the tick waited {waited:.1f} s for the start under way"
    assert sorted(pk for pk, _ in due) == sorted(socket.pk for socket in fleet_sockets if socket.pk != busy.pk)
    busy.refresh_from_db()
    assert busy.monitor_claimed_until is None, "the locked socket is not leased: the next tick queues it"
    again, _ = socket_queue_monitoring(now=now + timedelta(seconds=1), ahead=timedelta(seconds=1), queued_for=timedelta(seconds=5))
    assert [pk for pk, _ in again] == [busy.pk], "queued by the next tick, once free"


@pytest.mark.django_db(transaction=True)
def test_the_watch_checks_a_batch_at_once_so_a_hand_s_on_is_switched_off_without_waiting_for_a_dead_plug(fleet, fleet_sockets, batch_threads):
    """DESIGN §6.3 at scale: the must-be-OFF watch reads a batch of idle plugs' relays at once; one switched ON by hand
    is switched OFF again as soon as its own read is back, not after the batch's dead plug has timed out."""
    hand, dead = fleet.plugs["2"], fleet.plugs["3"]
    assert hand.press_button() is True
    dead.set_fault("timeout")  # hangs every request: the watch's quick read gives up after 1 s
    off_after = []

    def see_it_off(began: float) -> None:
        while hand.is_on and time.monotonic() - began < 5:
            time.sleep(0.005)
        off_after.append(time.monotonic() - began)

    began, claimed_at = time.monotonic(), timezone.now()
    watcher = threading.Thread(target=see_it_off, args=(began,))
    watcher.start()
    dead_first = [fleet_sockets[2].pk, *(socket.pk for socket in fleet_sockets if socket.pk != fleet_sockets[2].pk)]
    changes = socket_watch_many(socket_ids=dead_first)
    took = time.monotonic() - began
    watcher.join(5)
    assert not hand.is_on and list(changes) == [fleet_sockets[1].pk], "the hand's ON was found and switched OFF again"
    assert took >= 0.9, "the batch waited for its dead plug's read"
    assert off_after[0] < 0.9, f"switched OFF {off_after[0]:.2f} s after the watch began, not after the dead plug's timeout"
    for plug in (fleet.plugs["1"], fleet.plugs["4"]):
        assert plug.commands == ["Power"], "one cheap relay query each, nothing switched"
    now = timezone.now()
    for socket in fleet_sockets:
        socket.refresh_from_db()
        if socket.pk == fleet_sockets[2].pk:
            assert 1.5 < (socket.watch_next_at - now).total_seconds() <= 2.0, "a plug that did not answer is checked again after 2 s"
        else:
            assert claimed_at + timedelta(seconds=0.5) <= socket.watch_next_at <= now, "due half an interval after the claim: due again now"
    again = socket_watch_many(socket_ids=[socket.pk for socket in fleet_sockets])
    assert again == {} and fleet.plugs["1"].commands == ["Power", "Power"], "due again: read again, nothing switched"
    assert dead.commands == ["Power"], "the plug that did not answer was read once (it hung), and is not due again yet"


@pytest.mark.django_db(transaction=True)
def test_the_watch_gives_back_the_sockets_read_while_a_dead_plug_still_hangs(fleet, fleet_sockets, batch_threads):
    """A dead plug still counted online holds up no other socket's next check: those read are given back (due again
    by the next tick) while its read still hangs."""
    fleet.plugs["1"].set_fault("timeout")  # hangs every request: the watch's quick read gives up after 1 s
    done = []
    batch = threading.Thread(target=lambda: done.append(socket_watch_many(socket_ids=[socket.pk for socket in fleet_sockets])))
    began = timezone.now()
    batch.start()
    time.sleep(0.6)
    given_back = {socket.pk: socket.watch_next_at for socket in Socket.objects.filter(pk__in=[s.pk for s in fleet_sockets])}
    batch.join(5)
    assert done == [{}]
    for socket in fleet_sockets[1:]:
        assert given_back[socket.pk] <= began + timedelta(seconds=0.6), "given back while the dead plug's read still hung"
    assert given_back[fleet_sockets[0].pk] > began + timedelta(seconds=5), "the dead plug's lease still held"


@pytest.mark.django_db(transaction=True)
def test_the_watch_skips_a_socket_locked_by_a_start_under_way(fleet, fleet_sockets, batch_threads):
    """A socket whose row a start or stop holds (it is being switched) is not waited for; the others are checked."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    with StartUnderWay(fleet_sockets[0]):
        began = time.monotonic()
        socket_watch_many(socket_ids=[socket.pk for socket in fleet_sockets])
        waited = time.monotonic() - began
    assert waited < 1.0, f"the watch waited {waited:.1f} s for the start under way"
    assert fleet.plugs["1"].commands == [] and all(fleet.plugs[n].commands == ["Power"] for n in "234")
