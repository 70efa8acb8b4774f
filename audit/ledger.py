"""The ledger: events written by the services in the transaction of the change, sealed into one hash chain.

An event is recorded where the service decides; the outermost `ledger_atomic()` writes what
was recorded inside it just before it commits: under the head row's lock (held only for that
last step, never across device I/O) each event gets the next `seq`, the previous event's hash
and its own `hash = SHA-256(seq | previous_hash | content_hash)`.
A row edited, deleted or inserted behind the service's back breaks the chain there.
"""
import contextlib
import logging
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from .actors import Actor
from .models import Event, LedgerCheck, LedgerHead

GENESIS = "0" * 64
logger = logging.getLogger(__name__)
_encode = DjangoJSONEncoder().encode


class _Pending(threading.local):
    """Events recorded by this thread inside the open ledger_atomic(), not yet written."""

    def __init__(self):
        self.depth = 0
        self.events: list[Event] = []


_pending = _Pending()


def event_content(event: Event) -> dict:
    """What an event's content hash covers: every column but the chain's own."""
    return {
        "at": event.at.astimezone(dt_timezone.utc).isoformat(timespec="microseconds"),
        "kind": event.kind,
        "socket": event.socket_id,
        "instance": event.instance_id,
        "reason": event.reason,
        "actor": event.actor,
        "client": event.client,
        "data": event.data,
    }


def event_content_hash(event: Event) -> str:
    canonical = json.dumps(event_content(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_hash(*, seq: int, previous_hash: str, content_hash: str) -> str:
    return hashlib.sha256(f"{seq}|{previous_hash}|{content_hash}".encode()).hexdigest()


@contextlib.contextmanager
def ledger_atomic() -> Iterator[None]:
    """transaction.atomic() whose outermost block writes the events recorded inside it, chained, just before it
    commits. A nested block that raises takes its events with it, like its savepoint takes its rows."""
    _pending.depth += 1
    mark = len(_pending.events)
    try:
        with transaction.atomic():
            yield
            if _pending.depth == 1 and _pending.events:
                _ledger_append(events=_pending.events)
    except BaseException:
        del _pending.events[mark:]
        raise
    finally:
        _pending.depth -= 1
        if _pending.depth == 0:
            _pending.events = []


def ledger_record(*, kind: str, socket_id: int | None = None, instance_id: str | None = None, reason: str = "",
                  actor: Actor | None = None, data: dict | None = None, at: datetime | None = None) -> None:
    """Append an event (`actor` None: the service decided). Inside ledger_atomic() it is written when that
    commits; outside, at once (in the caller's transaction, if any)."""
    event = Event(
        at=at or timezone.now(), kind=kind, socket_id=socket_id, instance_id=instance_id, reason=_storable(reason or ""),
        actor=_storable(actor.as_json()) if actor else None, client=_storable(actor.client) if actor else {},
        data=_storable(json.loads(_encode(data or {}))),  # exactly what the column gives back, so the hash verifies
    )
    event.content_hash = event_content_hash(event)
    if _pending.depth:
        _pending.events.append(event)
    else:
        with transaction.atomic():
            _ledger_append(events=[event])


def _storable(value):
    """`value` with NUL removed from every string: PostgreSQL's text and jsonb cannot hold it, and a caller's header
    or a device's answer carrying one must not fail the change it is recorded with."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def _ledger_head_lock() -> LedgerHead:
    head = LedgerHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # a fresh database (or one flushed by a test)
        LedgerHead.objects.bulk_create([LedgerHead(pk=1)], ignore_conflicts=True)
        head = LedgerHead.objects.select_for_update().get(pk=1)
    return head


def _ledger_append(*, events: list[Event]) -> None:
    """Chain `events` (in the order recorded) after the head and insert them, under the head's lock: the lock
    is taken as the last step before commit, never across device I/O, so writers queue only for this."""
    head = _ledger_head_lock()
    seq, previous = head.seq, head.hash
    for event in events:
        seq += 1
        event.seq, event.previous_hash = seq, previous
        event.hash = previous = chain_hash(seq=seq, previous_hash=previous, content_hash=event.content_hash)
    Event.objects.bulk_create(events)
    LedgerHead.objects.filter(pk=1).update(seq=seq, hash=previous, event=events[-1].pk)


def ledger_head() -> LedgerHead:
    """The last sealed event (seq 0 and the genesis hash for an empty ledger)."""
    return LedgerHead.objects.filter(pk=1).first() or LedgerHead(pk=1)


@dataclass(frozen=True)
class Verification:
    valid: bool
    events: int  # events checked
    first_invalid_event: int | None = None  # its id
    reason: str = ""
    seq: int = 0  # the last event checked and its hash: where an incremental check resumes
    hash: str = GENESIS


def ledger_verify(*, after_seq: int = 0, after_hash: str = GENESIS, until_seq: int | None = None, chunk_size: int = 2000) -> Verification:
    """Walk the chain from after `after_seq` to the head: each event's content hash, its link to the one before,
    no gap in `seq`, no row outside the chain, and the head where the chain ends. Flat memory.
    `until_seq`: check only up to that event (a slice of a longer walk; the end is not checked)."""
    head = ledger_head()
    end = head.seq if until_seq is None else min(until_seq, head.seq)
    seq, previous, count = after_seq, after_hash, 0
    for event in Event.objects.filter(seq__gt=after_seq, seq__lte=end).order_by("seq").iterator(chunk_size=chunk_size):
        count += 1
        problem = _event_problem(event=event, seq=seq, previous=previous)
        if problem:
            return Verification(valid=False, events=count, first_invalid_event=event.pk, reason=f"event {event.pk} (#{event.seq}): {problem}", seq=seq, hash=previous)
        seq, previous = event.seq, event.hash
    if until_seq is not None:
        if seq != end:
            return Verification(valid=False, events=count, first_invalid_event=None, reason=f"#{seq + 1}–#{end} missing (deleted)", seq=seq, hash=previous)
        return Verification(valid=True, events=count, seq=seq, hash=previous)
    if seq != head.seq or previous != head.hash:
        return Verification(valid=False, events=count, first_invalid_event=head.event_id,
                            reason=f"the chain ends at #{seq} but the head is #{head.seq} (event {head.event_id}): events deleted or rewritten at the end", seq=seq, hash=previous)
    checked = LedgerCheck.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
    if after_seq == 0 and checked > head.seq:  # the tail deleted and the head rewound to match: only the last check knows
        return Verification(valid=False, events=count, first_invalid_event=head.event_id,
                            reason=f"the head is #{head.seq} but #{checked} was verified before: events deleted at the end", seq=seq, hash=previous)
    # Re-read: an event a concurrent writer sealed meanwhile is newer, not a stray. Committed events are always sealed.
    stray = Event.objects.filter(seq__gt=ledger_head().seq).order_by("pk").first()
    if stray is not None:
        return Verification(valid=False, events=count, first_invalid_event=stray.pk,
                            reason=f"event {stray.pk} is not in the chain: inserted behind the service's back", seq=seq, hash=previous)
    return Verification(valid=True, events=count, seq=seq, hash=previous)


def _event_problem(*, event: Event, seq: int, previous: str) -> str:
    if event.seq != seq + 1:
        return f"#{seq + 1}–#{event.seq - 1} missing (deleted)" if event.seq > seq + 1 else f"#{event.seq} out of order"
    if event_content_hash(event) != event.content_hash:
        return "content altered after it was written"
    if event.previous_hash != previous or chain_hash(seq=event.seq, previous_hash=previous, content_hash=event.content_hash) != event.hash:
        return "not linked to the event before it"
    return ""


SCAN_SLICE = 20000  # events the beat task re-checks per run, from the start, besides the new ones


def ledger_check() -> LedgerCheck:
    """The beat task's check: the events sealed since the last run, and the next slice of a rolling re-check
    from the start (so an old row edited later is found too). A break is kept, logged and shown (admin,
    /readyz) until a full `audit_verify` finds the chain intact."""
    check = LedgerCheck.objects.filter(pk=1).first() or LedgerCheck.objects.create(pk=1)
    if check.broken_event is not None or check.broken_reason:
        logger.error("audit ledger BROKEN: %s", check.broken_reason)
        return check
    new = ledger_verify(after_seq=check.seq, after_hash=check.hash)
    if new.valid:
        check.seq, check.hash = new.seq, new.hash
        scan = ledger_verify(after_seq=check.scan_seq, after_hash=check.scan_hash, until_seq=min(check.scan_seq + SCAN_SLICE, check.seq))
        if scan.valid:
            wrapped = scan.seq >= check.seq
            check.scan_seq, check.scan_hash = (0, GENESIS) if wrapped else (scan.seq, scan.hash)
        else:
            new = scan
    check.checked_at = timezone.now()
    if not new.valid:
        check.broken_event, check.broken_reason = new.first_invalid_event, new.reason[:255]
        logger.error("audit ledger BROKEN: %s", new.reason)
    check.save()
    return check


def ledger_check_record(*, result: Verification) -> None:
    """After a full verification (audit_verify): the beat task resumes from its result, or keeps its break."""
    now = timezone.now()
    if result.valid:
        LedgerCheck.objects.update_or_create(pk=1, defaults={
            "seq": result.seq, "hash": result.hash, "scan_seq": 0, "scan_hash": GENESIS, "checked_at": now, "broken_event": None, "broken_reason": "",
        })
    else:
        LedgerCheck.objects.update_or_create(pk=1, defaults={"checked_at": now, "broken_event": result.first_invalid_event, "broken_reason": result.reason[:255]})
