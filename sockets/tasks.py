"""Celery tasks of the device side (thin): reconcile sockets whose relay is not where it must be; sample retention."""
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import PowerState
from .selectors import socket_list_to_reconcile
from .services import socket_reconcile
from .services.retention import samples_roll_up

# A fan-out message not picked up by then is dropped: the next sweep sends a fresh one,
# so a saturated worker does not pile up copies of the same work.
FANOUT_EXPIRES = 2.0


@shared_task
def reconcile_sockets() -> int:
    """Beat sweep: one reconcile_socket task per socket that is off target and out of backoff.

    Driving a plug OFF is safety work: it goes to the safety queue; driving one ON to the default queue.
    """
    sockets = list(socket_list_to_reconcile(now=timezone.now()).values_list("pk", "desired_power"))
    for socket_id, desired in sockets:
        queue = settings.CELERY_TASK_DEFAULT_QUEUE if desired == PowerState.ON else settings.SMARTSOCKET_SAFETY_QUEUE
        reconcile_socket.apply_async((socket_id,), expires=FANOUT_EXPIRES, queue=queue)
    return len(sockets)


@shared_task
def reconcile_socket(socket_id: int) -> str:
    """Drive one socket's device to its desired power (retried with backoff by the sweep)."""
    return socket_reconcile(socket_id=socket_id).action


@shared_task
def roll_up_samples() -> int:
    """Beat: fold samples older than the retention into rollups and delete them (bounded per run; the next run goes on)."""
    return samples_roll_up(max_samples=settings.SMARTSOCKET_ROLLUP_MAX_SAMPLES).samples
