"""Operations services: heartbeats, event counters, and the readiness checks that read them."""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import LedgerCheck

from .models import EventCounter, Heartbeat

logger = logging.getLogger(__name__)
HEARTBEATS = ("worker", "safety", "beat")  # what /readyz requires
PROCESS_HEARTBEATS = (*HEARTBEATS, "listen")


def heartbeat_record(*, name: str) -> None:
    """A background process of kind `name` is alive (one upsert)."""
    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": timezone.now()})


def event_count(*, name: str, label: str = "") -> None:
    """Add one to a counter. Never raises: a metric must not break the work it counts."""
    try:
        with transaction.atomic():
            if not EventCounter.objects.filter(name=name, label=label).update(value=F("value") + 1):
                EventCounter.objects.create(name=name, label=label, value=1)
    except IntegrityError:  # created concurrently: count on the row that won
        EventCounter.objects.filter(name=name, label=label).update(value=F("value") + 1)
    except DatabaseError as exc:
        logger.debug("counter %s{%s} not counted: %s", name, label, exc)


def readiness() -> dict[str, dict]:
    """Each check of /readyz: database, broker, and the heartbeats of worker, safety worker and beat."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    beats = dict(Heartbeat.objects.values_list("name", "beat_at")) if checks["database"]["ok"] else {}
    for name in HEARTBEATS:
        checks[name] = _heartbeat_check(beats.get(name))
    return checks


def heartbeat_state(*, name: str) -> dict:
    """One process kind's heartbeat (also the listener's, `listen`, which /readyz does not require: not every lab has MQTT plugs)."""
    return _heartbeat_check(Heartbeat.objects.filter(name=name).values_list("beat_at", flat=True).first())


def _heartbeat_check(at) -> dict:
    limit = timedelta(seconds=3 * settings.SMARTSOCKET_HEARTBEAT_INTERVAL + 2)
    age = (timezone.now() - at).total_seconds() if at else None
    check = {"ok": age is not None and age <= limit.total_seconds(), "ageSeconds": round(age, 1) if age is not None else None}
    if not check["ok"]:
        check["error"] = "no heartbeat yet" if age is None else f"last heartbeat {age:.0f} s ago (limit {limit.total_seconds():.0f} s)"
    return check


def ledger_state() -> dict:
    """What the beat task's last ledger check found."""
    check = LedgerCheck.objects.filter(pk=1).first()
    if check is None or check.checked_at is None:
        return {"intact": None, "verifiedTo": 0, "checkedAt": None}
    broken = check.broken_event is not None or bool(check.broken_reason)
    state = {"intact": not broken, "verifiedTo": check.seq, "checkedAt": check.checked_at.isoformat()}
    if broken:
        state.update(firstInvalidEvent=check.broken_event, error=check.broken_reason)
    return state


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"ok": True}


def _check_broker() -> dict:
    from .celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:  # noqa: BLE001 - any transport error means "not ready"
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"ok": True}
