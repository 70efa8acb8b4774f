"""The emergency stop of a socket and its recovery."""
import logging
from dataclasses import dataclass, field

from django.db import transaction

from sockets.models import Socket
from sockets.services import OffRelay, recording_device_faults, socket_lock, socket_set_emergency

from ..models import StopReason
from ..selectors import instance_list_running
from .holders import instances_stop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmergencyResult:
    socket: Socket
    stopped_instances: list[str] = field(default_factory=list)


def emergency_stop(*, socket: Socket, triggered_by: str | None = None) -> EmergencyResult:
    """Stop every running instance of the socket, power it off and lock it until recover.

    The decision is committed even when the device does not answer: the instances stay
    stopped, the lock stays on and reconcile keeps driving the plug OFF. The device error
    is raised after the commit. Raises SocketDeviceError, SocketPowerFailed.
    """
    with recording_device_faults(), transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        socket_set_emergency(socket=socket, stopped=True, by=triggered_by or "")
        running = list(instance_list_running(socket=socket).select_related("socket"))
        error = instances_stop(socket=socket, instances=running, reason=StopReason.EMERGENCY, relay=OffRelay.SWITCH_OR_LEAVE)
    logger.warning("emergency stop: socket=%s by=%r instances=%s%s", socket.name, triggered_by or "", [i.pk for i in running],
                   f" (the plug did not confirm OFF: {error})" if error else "")
    if error is not None:
        raise error
    return EmergencyResult(socket=socket, stopped_instances=[instance.pk for instance in running])


def recover(*, socket: Socket) -> Socket:
    """Lift the emergency lock so instances can start again."""
    with transaction.atomic():
        socket = socket_lock(socket_id=socket.pk)
        socket = socket_set_emergency(socket=socket, stopped=False)
    logger.info("recover: socket=%s emergency lock lifted", socket.name)
    return socket
