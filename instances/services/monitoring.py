"""What monitoring does to instances when a plug is switched by hand."""
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from sockets.services import (
    SocketChange,
    SocketPoll,
    socket_accept_manual_change,
    socket_detect_change,
    socket_lock,
    socket_poll,
    socket_reconcile,
)

from ..models import StopReason
from ..selectors import instance_list_running
from .holders import instance_mark_stopped

logger = logging.getLogger(__name__)


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
                instance_mark_stopped(instance=instance, reason=StopReason.MANUAL, at=now)
                stopped.append(instance.pk)
            socket_accept_manual_change(socket=socket, on=False)
        elif change == SocketChange.MANUAL_ON:
            socket_accept_manual_change(socket=socket, on=True)
    if stopped:
        logger.info("monitor: instances %s stopped by hand on %s", stopped, socket.name)
    return change, stopped
