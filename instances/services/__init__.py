"""Every state change of instances, re-exported from the modules that hold them."""
from .callbacks import (
    CallbackFailed,
    callback_deliver,
    callback_schedule,
    instance_start_wait_stop,
)
from .deadlines import instance_renew, instance_stop_overdue, instance_stop_timeout
from .holders import (
    EmergencyResult,
    StartResult,
    StopResult,
    emergency_stop,
    instance_delete,
    instance_start,
    instance_stop,
    recover,
)
from .monitoring import MonitorResult, instance_stop_manual, socket_monitor

__all__ = [
    "CallbackFailed",
    "EmergencyResult",
    "MonitorResult",
    "StartResult",
    "StopResult",
    "callback_deliver",
    "callback_schedule",
    "emergency_stop",
    "instance_delete",
    "instance_renew",
    "instance_start",
    "instance_start_wait_stop",
    "instance_stop",
    "instance_stop_manual",
    "instance_stop_overdue",
    "instance_stop_timeout",
    "recover",
    "socket_monitor",
]
