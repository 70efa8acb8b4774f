"""Heartbeats (thin): beat sends one per queue; the worker that runs it proves its queue is served."""
from celery import shared_task
from celery.signals import after_task_publish

from .operations import heartbeat_record


@shared_task
def heartbeat(name: str) -> None:
    heartbeat_record(name=name)


@after_task_publish.connect(sender="smartsocket_site.tasks.heartbeat")
def _beat_is_alive(sender=None, **kwargs) -> None:
    """Only beat sends heartbeats: each one it publishes is its own sign of life."""
    heartbeat_record(name="beat")
