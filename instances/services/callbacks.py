"""Durable callbacks: stored before the answer, PUT by a worker once due, retried with backoff."""
import logging
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.actors import Actor
from audit.ledger import ledger_atomic
from smartsocket_site.access import callback_url_allowed
from sockets.models import Socket
from sockets.services import recording_device_faults

from ..models import Callback, CallbackKind, Instance, StopReason
from .holders import StartResult, instance_start, instance_stop_unattended

logger = logging.getLogger(__name__)


def callback_schedule(*, kind: str, urls: list[tuple[str, str]], due_at, payload: dict | None = None, instance: Instance | None = None) -> list[Callback]:
    """Store callbacks (header name, URL) to be PUT once due; they survive restarts."""
    callbacks = [
        Callback.objects.create(kind=kind, url=url, header_name=header, due_at=due_at, next_attempt_at=due_at, payload=payload or {}, instance=instance)
        for header, url in urls
    ]
    for callback in callbacks:
        _callback_schedule_delivery(callback=callback)
    return callbacks


def instance_start_wait_stop(*, socket: Socket, duration_s: float, timeout_ms: int | None, callback_urls: list[tuple[str, str]], client: dict[str, str],
                             actor: Actor | None = None) -> StartResult:
    """Start an instance and store its planned stop (with the callbacks to call once stopped) in one transaction."""
    with recording_device_faults(), ledger_atomic():
        result = instance_start(socket=socket, timeout_ms=timeout_ms, client=client, actor=actor)
        due_at = result.instance.started_at + timedelta(seconds=duration_s)
        # A row without URL still carries the planned stop when the caller gave no callback.
        callback_schedule(kind=CallbackKind.START_WAIT_STOP, urls=callback_urls or [("", "")], due_at=due_at, instance=result.instance)
    return result


def _callback_schedule_delivery(*, callback: Callback) -> None:
    """After commit, a task at the due time; the beat sweep delivers it if this message is lost.

    A start-wait-stop's planned stop also gets a task of its own on the safety lane, so a flood of
    callbacks on the default lane never delays the plug going OFF (its delivery makes the stop too,
    as the backstop)."""
    from ..tasks import deliver_callback, stop_planned  # the tasks module imports this one

    transaction.on_commit(lambda: deliver_callback.apply_async((callback.pk,), eta=callback.due_at), robust=True)
    if callback.kind == CallbackKind.START_WAIT_STOP:
        transaction.on_commit(lambda: stop_planned.apply_async((callback.pk,), eta=callback.due_at), robust=True)


def instance_stop_planned(*, callback_id: int):
    """Make the planned stop of a start-wait-stop once due (reason requested; committed even if the device fails).

    The callback itself is delivered by the default lane. None when not due, already delivered, or stopped.
    """
    callback = Callback.objects.filter(
        pk=callback_id, kind=CallbackKind.START_WAIT_STOP, delivered_at=None, failed_at=None, due_at__lte=timezone.now()
    ).first()
    if callback is None or callback.instance_id is None:
        return None
    return instance_stop_unattended(instance_id=callback.instance_id, reason=StopReason.REQUESTED)


class CallbackFailed(Exception):
    """This attempt failed; `permanent` ones are not retried."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def callback_deliver(*, callback_id: int) -> Callback | None:
    """Deliver one due callback: (start-wait-stop: stop its instance first), then PUT its JSON payload.

    Claimed with a conditional UPDATE that moves `next_attempt_at` past the attempt's
    longest duration, so two workers never send it at once and one that dies mid-way
    leaves it to be sent again (at-least-once). Errors and non-2xx answers are retried
    with exponential backoff; after SMARTSOCKET_CALLBACK_MAX_ATTEMPTS it is marked failed
    with the reason. None when it is not due or another worker has it.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=4 * settings.SMARTSOCKET_CALLBACK_TIMEOUT + 60)
    claimed = (
        Callback.objects.filter(pk=callback_id, delivered_at=None, failed_at=None, due_at__lte=now)
        .filter(Q(next_attempt_at=None) | Q(next_attempt_at__lte=now))
        .update(next_attempt_at=lease, attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    callback = Callback.objects.select_related("instance__socket").get(pk=callback_id)
    try:
        if callback.kind == CallbackKind.START_WAIT_STOP:
            callback.payload = _callback_planned_stop(callback=callback)
            Callback.objects.filter(pk=callback.pk).update(payload=callback.payload)
        if callback.url:
            _callback_put(url=callback.url, payload=callback.payload)
    except CallbackFailed as exc:
        return _callback_failed(callback=callback, error=exc)
    callback.delivered_at, callback.last_error = timezone.now(), ""
    Callback.objects.filter(pk=callback.pk).update(delivered_at=callback.delivered_at, last_error="")
    return callback


def _callback_planned_stop(*, callback: Callback) -> dict:
    """Stop the start-wait-stop instance (reason requested; committed even if the device fails) and describe it."""
    from ..api.serializers import InstanceSerializer  # the shape callers get from the API

    instance = callback.instance
    if instance is None:
        raise CallbackFailed("start-wait-stop callback without an instance", permanent=True)
    result = instance_stop_unattended(instance_id=instance.pk, reason=StopReason.REQUESTED)
    if result is None and Instance.objects.filter(pk=instance.pk, stopped_at=None).exists():
        raise CallbackFailed("the planned stop is being made by another worker; retried")
    instance = result.instance if result is not None else Instance.objects.select_related("socket").get(pk=instance.pk)
    return {"message": f"instance {instance.pk} stopped", "instance": InstanceSerializer(instance).data}


def _callback_put(*, url: str, payload: dict) -> None:
    """PUT the JSON payload; allowed http(s) URLs only, no redirects followed, short timeouts. Raises CallbackFailed."""
    if not callback_url_allowed(url):  # checked again: the allow-list may have changed since the row was stored
        raise CallbackFailed(f"not an allowed http(s) URL (SMARTSOCKET_CALLBACK_ALLOWED_*): {url[:100]}", permanent=True)
    timeout = settings.SMARTSOCKET_CALLBACK_TIMEOUT
    try:
        response = requests.put(url, json=payload, timeout=(timeout, timeout), allow_redirects=False)
    except requests.RequestException as exc:
        raise CallbackFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise CallbackFailed(f"HTTP {response.status_code}" + (" (redirects are not followed)" if response.is_redirect else ""))


def _callback_failed(*, callback: Callback, error: CallbackFailed) -> Callback:
    """Schedule the next attempt with exponential backoff, or give up and record why."""
    now = timezone.now()
    callback.last_error = str(error)[:500]
    if error.permanent or callback.attempts >= settings.SMARTSOCKET_CALLBACK_MAX_ATTEMPTS:
        callback.failed_at = now
        logger.error("callback %s to %s given up after %d attempts: %s", callback.pk, callback.url, callback.attempts, error)
    else:
        delay = min(settings.SMARTSOCKET_CALLBACK_BACKOFF * 2 ** (callback.attempts - 1), settings.SMARTSOCKET_CALLBACK_BACKOFF_MAX)
        callback.next_attempt_at = now + timedelta(seconds=delay)
        logger.warning("callback %s to %s failed (attempt %d, next in %gs): %s", callback.pk, callback.url, callback.attempts, delay, error)
    Callback.objects.filter(pk=callback.pk).update(failed_at=callback.failed_at, next_attempt_at=callback.next_attempt_at, last_error=callback.last_error)
    return callback
