"""Celery tasks (thin): monitoring, deadlines and callbacks; each calls one service."""
from celery import shared_task
from django.utils import timezone

from sockets.selectors import socket_list_due_for_sample
from sockets.tasks import FANOUT_EXPIRES

from .selectors import callback_list_due
from .services import callback_deliver, instance_stop_overdue, instance_stop_timeout, socket_monitor


@shared_task
def monitor_sockets() -> int:
    """Beat tick: one monitor_socket task per socket whose sample is due, so a dead plug delays no other."""
    socket_ids = list(socket_list_due_for_sample(now=timezone.now()).values_list("pk", flat=True))
    for socket_id in socket_ids:
        monitor_socket.apply_async((socket_id,), expires=FANOUT_EXPIRES)
    return len(socket_ids)


@shared_task
def monitor_socket(socket_id: int) -> str | None:
    """Sample one socket; a manual change ends or opens power as the plug says."""
    return socket_monitor(socket_id=socket_id).change


@shared_task
def enforce_deadline(instance_id: str) -> bool:
    """Stop one instance at its deadline (sent at start with eta=deadline); a no-op if renewed or stopped."""
    return instance_stop_timeout(instance_id=instance_id) is not None


@shared_task
def enforce_deadlines() -> list[str]:
    """Beat sweep: stop every running instance whose deadline has passed (backstop, and after restarts)."""
    return instance_stop_overdue()


@shared_task
def deliver_callbacks() -> int:
    """Beat sweep: one deliver_callback task per callback due (also those that fell due while no worker ran)."""
    callback_ids = list(callback_list_due(now=timezone.now()).values_list("pk", flat=True))
    for callback_id in callback_ids:
        deliver_callback.apply_async((callback_id,), expires=FANOUT_EXPIRES)
    return len(callback_ids)


@shared_task
def deliver_callback(callback_id: int) -> bool:
    """Deliver one callback if it is due and no other worker has it."""
    callback = callback_deliver(callback_id=callback_id)
    return callback is not None and callback.delivered_at is not None
