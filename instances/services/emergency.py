"""The emergency stop of a socket and its recovery."""
import logging
from dataclasses import dataclass, field

from audit.actors import Actor
from audit.ledger import ledger_atomic, ledger_record
from audit.models import Event, EventKind
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


def emergency_stop(*, socket: Socket, triggered_by: str | None = None, actor: Actor | None = None) -> EmergencyResult:
    """Stop every running instance of the socket, power it off and lock it until recover.

    The decision is committed even when the device does not answer: the instances stay
    stopped, the lock stays on and reconcile keeps driving the plug OFF. The device error
    is raised after the commit. Who pressed it (`actor`) is kept in the ledger, past a recover.
    Raises SocketDeviceError, SocketPowerFailed.
    """
    with recording_device_faults(), ledger_atomic():
        socket = socket_lock(socket_id=socket.pk)
        already = socket.is_emergency_stopped
        socket_set_emergency(socket=socket, stopped=True, by=triggered_by or "")
        running = list(instance_list_running(socket=socket).select_related("socket"))
        ledger_record(kind=EventKind.EMERGENCY_STOP, socket_id=socket.pk, actor=actor, data={
            "triggeredBy": triggered_by or "", "stoppedInstances": [instance.pk for instance in running], "alreadyStopped": already,
        })
        error = instances_stop(socket=socket, instances=running, reason=StopReason.EMERGENCY, relay=OffRelay.SWITCH_OR_LEAVE, actor=actor)
    logger.warning("emergency stop: socket=%s by=%r instances=%s%s", socket.name, triggered_by or "", [i.pk for i in running],
                   f" (the plug did not confirm OFF: {error})" if error else "")
    if error is not None:
        raise error
    return EmergencyResult(socket=socket, stopped_instances=[instance.pk for instance in running])


def recover(*, socket: Socket, actor: Actor | None = None) -> Socket:
    """Lift the emergency lock so instances can start again (the ledger keeps who had pressed it and who lifted it)."""
    with ledger_atomic():
        socket = socket_lock(socket_id=socket.pk)
        pressed = Event.objects.filter(socket=socket, kind=EventKind.EMERGENCY_STOP).order_by("-seq").values("pk", "actor").first()
        ledger_record(kind=EventKind.RECOVER, socket_id=socket.pk, actor=actor, data={
            "wasStopped": socket.is_emergency_stopped, "emergencyStoppedAt": socket.emergency_stopped_at,
            "emergencyStoppedBy": socket.emergency_stopped_by,
            "emergencyStopEvent": pressed["pk"] if pressed and socket.is_emergency_stopped else None,
            "pressedBy": pressed["actor"] if pressed and socket.is_emergency_stopped else None,
        })
        socket = socket_set_emergency(socket=socket, stopped=False)
    logger.info("recover: socket=%s emergency lock lifted", socket.name)
    return socket
