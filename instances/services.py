"""Every state change of instances: start, stop, delete, emergency stop, recover."""
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from smartsocket_site.access import callback_url_allowed
from sockets.drivers import EnergyReading
from sockets.exceptions import InvalidParameter, SocketDeviceError, SocketEmergencyStopped, SocketPowerFailed
from sockets.models import PowerCause, Socket
from sockets.selectors import energy_sample_latest, power_period_get_open
from sockets.services import (
    SocketChange,
    SocketPoll,
    energy_sample_record,
    socket_accept_manual_change,
    socket_detect_change,
    socket_device_faults,
    socket_lock,
    socket_poll,
    socket_power_off,
    socket_power_on,
    socket_probe,
    socket_read_energy,
    socket_reconcile,
    socket_record_fault,
    socket_set_desired,
    socket_set_emergency,
)

from .exceptions import InstanceNotRunning
from .models import Callback, CallbackKind, Instance, StopReason
from .selectors import instance_get, instance_list_overdue, instance_list_running

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    instance: Instance
    triggered_power_on: bool


@dataclass(frozen=True)
class StopResult:
    instance: Instance
    triggered_power_off: bool


@dataclass(frozen=True)
class EmergencyResult:
    socket: Socket
    stopped_instances: list[str] = field(default_factory=list)


def instance_start(*, socket: Socket, timeout_ms: int | None = None, client: dict[str, str] | None = None) -> StartResult:
    """Start an instance on `socket`, powering it on if nothing else holds it.

    Holds the socket lock across the device commands, so starts, stops and monitoring are
    serialized per socket; the driver timeout bounds the wait. Nothing is written when the
    device fails. Raises SocketEmergencyStopped, SocketDeviceError, SocketPowerFailed.
    """
    with socket_device_faults(socket=socket), transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        if socket.is_emergency_stopped:
            raise SocketEmergencyStopped(socket=socket.name)
        reading = socket_read_energy(socket=socket)
        energy_sample_record(socket=socket, reading=reading)
        now = timezone.now()
        instance = Instance(
            socket=socket,
            started_at=now,
            emergency_stop_timeout_ms=timeout_ms,
            deadline_at=now + timedelta(milliseconds=timeout_ms) if timeout_ms is not None else None,
            energy_at_start=_energy_snapshot(reading),
            **{f"client_{key}": value for key, value in (client or {}).items()},
        )
        triggered = not instance_list_running(socket=socket).exists()
        period = None if triggered else power_period_get_open(socket=socket)
        if period is None:  # first holder (or a holder's period was lost): command the relay ON
            period = socket_power_on(socket=socket, by=instance.id, cause=PowerCause.REQUESTED)
        instance.power_period, instance.power_on_at, instance.triggered_power_on = period, period.power_on_at, triggered
        instance.save(force_insert=True)
        _instance_schedule_deadline(instance=instance)
    return StartResult(instance=instance, triggered_power_on=triggered)


def instance_stop(*, instance_id: str, reason: str = StopReason.REQUESTED) -> StopResult:
    """Stop an instance; the last running one powers its socket off. Repeat stops are no-ops.

    A requested stop writes nothing when the device fails (the caller gets the error and
    may retry). Raises InstanceNotFound, SocketDeviceError, SocketPowerFailed.
    """
    instance = instance_get(instance_id=instance_id)
    with socket_device_faults(socket=instance.socket), transaction.atomic():
        socket = socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance.pk)
        if not instance.is_running:
            return StopResult(instance=instance, triggered_power_off=False)
        triggered = _instance_finish(socket=socket, instance=instance, reason=reason)
    return StopResult(instance=instance, triggered_power_off=triggered)


def instance_delete(*, instance_id: str) -> StopResult:
    """Stop the instance if it runs, then hide it from the API; the row stays for audit."""
    instance = instance_get(instance_id=instance_id)
    with socket_device_faults(socket=instance.socket), transaction.atomic():
        socket = socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance.pk)
        triggered = _instance_finish(socket=socket, instance=instance, reason=StopReason.DELETED) if instance.is_running else False
        instance.deleted_at = timezone.now()
        instance.save(update_fields=["deleted_at"])
    return StopResult(instance=instance, triggered_power_off=triggered)


def emergency_stop(*, socket: Socket, triggered_by: str | None = None) -> EmergencyResult:
    """Stop every running instance of the socket, power it off and lock it until recover.

    The decision is committed even when the device does not answer: the instances stay
    stopped, the lock stays on and reconcile keeps driving the plug OFF. The device error
    is raised after the commit. Raises SocketDeviceError, SocketPowerFailed.
    """
    device_error = None
    with transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        socket_set_emergency(socket=socket, stopped=True, by=triggered_by or "")
        running = list(instance_list_running(socket=socket))
        now = timezone.now()
        for instance in running:
            _instance_mark_stopped(instance=instance, reason=StopReason.EMERGENCY, at=now)
        try:
            socket_power_off(socket=socket, by="<emergency>", cause=PowerCause.EMERGENCY)
            Instance.objects.filter(pk__in=[i.pk for i in running]).update(power_off_at=now)
        except (SocketDeviceError, SocketPowerFailed) as exc:
            device_error = exc
    if device_error is not None:
        with socket_device_faults(socket=socket):
            raise device_error
    return EmergencyResult(socket=socket, stopped_instances=[i.pk for i in running])


def recover(*, socket: Socket) -> Socket:
    """Lift the emergency lock so instances can start again."""
    with transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        return socket_set_emergency(socket=socket, stopped=False)


def _instance_finish(*, socket: Socket, instance: Instance, reason: str) -> bool:
    """Stop a running instance under the socket lock; power off if it was the last holder."""
    _socket_sample_if_reachable(socket=socket)
    now = timezone.now()
    last = not instance_list_running(socket=socket).exclude(pk=instance.pk).exists()
    if last:
        socket_power_off(socket=socket, by=_power_off_by(instance=instance, reason=reason), cause=reason)
        instance.power_off_at = now
        instance.triggered_power_off = True
    _instance_mark_stopped(instance=instance, reason=reason, at=now)
    return last


def _power_off_by(*, instance: Instance, reason: str) -> str:
    """Who a power period is closed by: the instance for its own stop, else `<timeout>`, `<manual>`, …"""
    return instance.pk if reason in (StopReason.REQUESTED, StopReason.DELETED) else f"<{reason}>"


def _socket_sample_if_reachable(*, socket: Socket) -> None:
    """Record a closing meter reading for the energy figures; a failed read does not block a stop."""
    try:
        reading = socket_read_energy(socket=socket)
    except SocketDeviceError:
        return
    energy_sample_record(socket=socket, reading=reading)


def _instance_mark_stopped(*, instance: Instance, reason: str, at) -> None:
    instance.stopped_at, instance.stop_reason = at, reason
    instance.energy_consumed_wh = instance_energy_consumed_wh(instance=instance)
    instance.save()


def instance_energy_consumed_wh(*, instance: Instance) -> float | None:
    """Energy (Wh) the socket's meter counted since the instance started, from the samples."""
    start_total = instance.energy_at_start.get("total")
    latest = energy_sample_latest(socket=instance.socket)
    if start_total is None or latest is None:
        return None
    return round(max(latest.total_kwh - start_total, 0.0) * 1000, 3)


def _energy_snapshot(reading: EnergyReading) -> dict:
    """The seed's `energy` object."""
    return {
        "today": reading.today_kwh,
        "total": reading.total_kwh,
        "power": reading.power_w,
        "apparentPower": reading.apparent_power_va,
        "reactivePower": reading.reactive_power_var,
        "factor": reading.power_factor,
        "voltage": reading.voltage_v,
        "current": reading.current_a,
    }


def callback_schedule(*, kind: str, urls: list[tuple[str, str]], due_at, payload: dict | None = None, instance: Instance | None = None) -> list[Callback]:
    """Store callbacks (header name, URL) to be PUT once due; they survive restarts."""
    callbacks = [
        Callback.objects.create(kind=kind, url=url, header_name=header, due_at=due_at, next_attempt_at=due_at, payload=payload or {}, instance=instance)
        for header, url in urls
    ]
    for callback in callbacks:
        _callback_schedule_delivery(callback=callback)
    return callbacks


def instance_start_wait_stop(*, socket: Socket, duration_s: float, timeout_ms: int | None, callback_urls: list[tuple[str, str]], client: dict[str, str]) -> StartResult:
    """Start an instance and store its planned stop (with the callbacks to call once stopped) in one transaction."""
    with transaction.atomic():
        result = instance_start(socket=socket, timeout_ms=timeout_ms, client=client)
        due_at = result.instance.started_at + timedelta(seconds=duration_s)
        # A row without URL still carries the planned stop when the caller gave no callback.
        callback_schedule(kind=CallbackKind.START_WAIT_STOP, urls=callback_urls or [("", "")], due_at=due_at, instance=result.instance)
    return result


# -- Background work: deadlines, lease renewal, monitoring of running instances, callbacks --


def _instance_schedule_deadline(*, instance: Instance) -> None:
    """After commit, a task at the instance's deadline; the beat sweep is the backstop if it is lost."""
    if instance.deadline_at is None:
        return
    from .tasks import enforce_deadline  # the tasks module imports this one

    transaction.on_commit(lambda: enforce_deadline.apply_async((instance.pk,), eta=instance.deadline_at), robust=True)


def instance_renew(*, instance_id: str, timeout_ms: int | None = None) -> Instance:
    """Push a running instance's deadline out to now + its emergencyStopTimeout (or the new one given).

    Raises InstanceNotFound, InstanceNotRunning (its deadline or a stop came first),
    InvalidParameter (no emergencyStopTimeout to renew).
    """
    instance = instance_get(instance_id=instance_id)
    with transaction.atomic():
        socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance.pk)
        if not instance.is_running:
            raise InstanceNotRunning(instanceId=instance.pk, stopReason=instance.stop_reason)
        timeout_ms = timeout_ms or instance.emergency_stop_timeout_ms
        if timeout_ms is None:
            raise InvalidParameter("the instance has no emergencyStopTimeout; give one to renew", instanceId=instance.pk)
        instance.emergency_stop_timeout_ms = timeout_ms
        instance.deadline_at = timezone.now() + timedelta(milliseconds=timeout_ms)
        instance.save(update_fields=["emergency_stop_timeout_ms", "deadline_at"])
        _instance_schedule_deadline(instance=instance)
    return instance


def instance_stop_timeout(*, instance_id: str) -> StopResult | None:
    """Stop an instance whose deadline has passed (reason timeout); None if it is not due or not running.

    Safe to run twice: the deadline is re-checked under the socket lock. Like an emergency
    stop, the decision is committed even when the device fails (instance stopped, desired
    OFF by `<timeout>`) and reconcile completes the power-off.
    """
    return _instance_stop_decided(
        instance_id=instance_id, reason=StopReason.TIMEOUT,
        due=lambda instance: instance.deadline_at is not None and instance.deadline_at <= timezone.now(),
    )


def instance_stop_overdue() -> list[str]:
    """Stop every running instance whose deadline has passed (the beat sweep); returns their ids."""
    overdue = list(instance_list_overdue(now=timezone.now()).values_list("pk", flat=True))
    return [instance_id for instance_id in overdue if instance_stop_timeout(instance_id=instance_id) is not None]


def _instance_stop_decided(*, instance_id: str, reason: str, due=None) -> StopResult | None:
    """A stop the service decided on its own: committed even if the device fails, which is then recorded.

    The device is probed first, without the lock: one that does not answer is not waited
    for under the lock (the stop only records the desired OFF; reconcile switches it later).
    None when the instance is gone, no longer running, or `due(instance)` is false under the lock.
    """
    instance = Instance.objects.select_related("socket").filter(pk=instance_id).first()
    if instance is None or not instance.is_running:
        return None
    reachable = socket_probe(socket=instance.socket)
    device_error = None if reachable else SocketDeviceError(f"{instance.socket.name}: not answering", socket=instance.socket.name)
    with transaction.atomic():
        socket = socket_lock(socket_id=instance.socket_id)
        instance = Instance.objects.select_related("socket").get(pk=instance_id)
        if not instance.is_running or (due is not None and not due(instance)):
            return None
        if reachable:
            try:
                triggered = _instance_finish(socket=socket, instance=instance, reason=reason)
            except (SocketDeviceError, SocketPowerFailed) as exc:
                device_error = exc
        if device_error is not None:
            triggered = _instance_finish_without_device(socket=socket, instance=instance, reason=reason)
    if device_error is not None:
        socket_record_fault(socket_id=socket.pk, error=device_error)
        logger.warning("%s stop of %s committed; the device failed, reconcile takes over: %s", reason, instance_id, device_error)
    return StopResult(instance=instance, triggered_power_off=triggered)


def _instance_finish_without_device(*, socket: Socket, instance: Instance, reason: str) -> bool:
    """Stop a running instance under the socket lock; the last holder leaves OFF as reconcile's target."""
    last = not instance_list_running(socket=socket).exclude(pk=instance.pk).exists()
    if last:
        socket_set_desired(socket=socket, on=False, by=_power_off_by(instance=instance, reason=reason), cause=reason)
        instance.triggered_power_off = True
    _instance_mark_stopped(instance=instance, reason=reason, at=timezone.now())
    return last


@dataclass(frozen=True)
class MonitorResult:
    poll: SocketPoll | None
    change: str | None = None
    stopped_instances: list[str] = field(default_factory=list)


def socket_monitor(*, socket_id: int) -> MonitorResult:
    """Sample one socket if due; when its relay differs from the database, act on it.

    Lives here, not in sockets, because a plug switched OFF by hand ends its running
    instances. Sampling runs without the socket lock; only a difference takes it.
    """
    poll = socket_poll(socket_id=socket_id)
    if poll is None or not poll.differs:
        return MonitorResult(poll=poll)
    change, stopped = instance_stop_manual(socket_id=socket_id)
    if change == SocketChange.RECONCILE:
        socket_reconcile(socket_id=socket_id, force=True)
    return MonitorResult(poll=poll, change=change, stopped_instances=stopped)


def instance_stop_manual(*, socket_id: int) -> tuple[str | None, list[str]]:
    """Apply a change made on the device by hand, after re-reading it under the socket lock.

    OFF by hand ends the running instances (reason manual, `isManuallyStopped`) and closes
    the period as `<manual>`; ON by hand with nothing running opens a `<manual>` period and
    makes ON the desired state. Returns the change seen (SocketChange or None) and the ids
    of the instances stopped; a RECONCILE change is left to the caller.
    """
    stopped: list[str] = []
    with transaction.atomic():
        socket = socket_lock(socket_id=socket_id)
        change = socket_detect_change(socket=socket)
        if change == SocketChange.MANUAL_OFF:
            now = timezone.now()
            for instance in instance_list_running(socket=socket).select_related("socket"):
                instance.power_off_at = now
                _instance_mark_stopped(instance=instance, reason=StopReason.MANUAL, at=now)
                stopped.append(instance.pk)
            socket_accept_manual_change(socket=socket, on=False)
        elif change == SocketChange.MANUAL_ON:
            socket_accept_manual_change(socket=socket, on=True)
    if stopped:
        logger.info("monitor: instances %s stopped by hand on %s", stopped, socket.name)
    return change, stopped


def _callback_schedule_delivery(*, callback: Callback) -> None:
    """After commit, a task at the due time; the beat sweep delivers it if this message is lost."""
    from .tasks import deliver_callback  # the tasks module imports this one

    transaction.on_commit(lambda: deliver_callback.apply_async((callback.pk,), eta=callback.due_at), robust=True)


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
    from .api.serializers import InstanceSerializer  # the shape callers get from the API

    instance = callback.instance
    if instance is None:
        raise CallbackFailed("start-wait-stop callback without an instance", permanent=True)
    result = _instance_stop_decided(instance_id=instance.pk, reason=StopReason.REQUESTED)
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
