"""Celery tasks of the device side (thin): reconcile sockets whose relay is not where it must be."""
from celery import shared_task
from django.utils import timezone

from .selectors import socket_list_to_reconcile
from .services import socket_reconcile

# A fan-out message not picked up by then is dropped: the next sweep sends a fresh one,
# so a saturated worker does not pile up copies of the same work.
FANOUT_EXPIRES = 10.0


@shared_task
def reconcile_sockets() -> int:
    """Beat sweep: one reconcile_socket task per socket that is off target and out of backoff."""
    socket_ids = list(socket_list_to_reconcile(now=timezone.now()).values_list("pk", flat=True))
    for socket_id in socket_ids:
        reconcile_socket.apply_async((socket_id,), expires=FANOUT_EXPIRES)
    return len(socket_ids)


@shared_task
def reconcile_socket(socket_id: int) -> str:
    """Drive one socket's device to its desired power (retried with backoff by the sweep)."""
    return socket_reconcile(socket_id=socket_id).action
