"""Celery tasks (thin): monitoring, the must-be-OFF watch, deadlines and callbacks; each calls one service.

Deadlines and the watch run on the safety queue (CELERY_TASK_ROUTES), served by a worker
pool of their own, so callbacks and sampling never delay them.
"""
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from sockets.services import socket_monitoring_batches, socket_queue_monitoring
from sockets.tasks import FANOUT_EXPIRES

from .selectors import callback_list_due, instance_list_overdue, socket_list_watch_due
from .services import callback_deliver, instance_stop_planned, instance_stop_timeout, socket_monitor, socket_monitor_many, socket_watch_many


@shared_task
def monitor_sockets() -> int:
    """Beat tick: the sockets whose sample is due by the next tick, in batches sent to run when due (a dead plug
    delays no other of its batch); each socket is leased to its task until the task expires, so no tick queues a
    socket twice."""
    now = timezone.now()
    tick = timedelta(seconds=settings.SMARTSOCKET_MONITOR_TICK)
    due, queued_until = socket_queue_monitoring(now=now, ahead=tick, queued_for=timedelta(seconds=FANOUT_EXPIRES))
    for socket_ids, last_due in socket_monitoring_batches(due=due, size=settings.SMARTSOCKET_MONITOR_BATCH):
        eta = max(last_due, now)
        monitor_socket_batch.apply_async((socket_ids, queued_until.isoformat()), eta=eta, expires=eta + timedelta(seconds=FANOUT_EXPIRES))
    return len(due)


@shared_task
def monitor_socket_batch(socket_ids: list[int], queued_until: str) -> int:
    """Sample a batch of sockets, each in a thread of its own."""
    return socket_monitor_many(socket_ids=socket_ids, queued_until=datetime.fromisoformat(queued_until))


@shared_task
def monitor_socket(socket_id: int, queued_until: str | None = None) -> str | None:
    """Sample one socket; a manual change ends or opens power as the plug says."""
    return socket_monitor(socket_id=socket_id, queued_until=datetime.fromisoformat(queued_until) if queued_until else None).change


WATCH_BATCH = 25  # sockets per watch task: 500 idle plugs are 20 tasks a second, not 500


@shared_task
def watch_sockets() -> int:
    """Beat tick (safety queue): the must-be-OFF sockets whose relay check is due, in watch_socket_batch tasks."""
    socket_ids = list(socket_list_watch_due(now=timezone.now()).values_list("pk", flat=True))
    for first in range(0, len(socket_ids), WATCH_BATCH):
        watch_socket_batch.apply_async((socket_ids[first:first + WATCH_BATCH],), expires=settings.SMARTSOCKET_OFF_WATCH_INTERVAL * 2)
    return len(socket_ids)


@shared_task
def watch_socket_batch(socket_ids: list[int]) -> int:
    """Check the relays of sockets that must be OFF, all at once; switch each found ON OFF again. Returns how many were ON."""
    return len(socket_watch_many(socket_ids=socket_ids))


@shared_task
def enforce_deadline(instance_id: str) -> bool:
    """Stop one instance at its deadline (sent at start with eta=deadline); a no-op if renewed, stopped or claimed."""
    return instance_stop_timeout(instance_id=instance_id) is not None


@shared_task
def enforce_deadlines() -> int:
    """Beat sweep (safety queue): one enforce_deadline per overdue instance nobody is stopping (backstop, restarts)."""
    instance_ids = list(instance_list_overdue(now=timezone.now()).values_list("pk", flat=True))
    for instance_id in instance_ids:
        enforce_deadline.apply_async((instance_id,), expires=FANOUT_EXPIRES)
    return len(instance_ids)


@shared_task
def deliver_callbacks() -> int:
    """Beat sweep: one deliver_callback task per callback due (also those that fell due while no worker ran)."""
    callback_ids = list(callback_list_due(now=timezone.now()).values_list("pk", flat=True))
    for callback_id in callback_ids:
        deliver_callback.apply_async((callback_id,), expires=FANOUT_EXPIRES)
    return len(callback_ids)


@shared_task
def stop_planned(callback_id: int) -> bool:
    """Safety lane: a start-wait-stop's planned stop at its due time; then its callback goes out on the default lane."""
    stopped = instance_stop_planned(callback_id=callback_id) is not None
    deliver_callback.apply_async((callback_id,), expires=FANOUT_EXPIRES)
    return stopped


@shared_task
def deliver_callback(callback_id: int) -> bool:
    """Deliver one callback if it is due and no other worker has it."""
    callback = callback_deliver(callback_id=callback_id)
    return callback is not None and callback.delivered_at is not None
