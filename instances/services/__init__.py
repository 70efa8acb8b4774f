"""Every state change of instances, re-exported from the modules that hold them."""
from .callbacks import (
    CallbackFailed,
    callback_deliver,
    callback_schedule,
    instance_start_wait_stop,
    instance_stop_planned,
)
from .deadlines import instance_renew, instance_stop_timeout
from .emergency import EmergencyResult, emergency_stop, recover
from .holders import (
    StartResult,
    StopResult,
    instance_delete,
    instance_start,
    instance_stop,
    instance_stop_unattended,
    instances_stop,
)
from .manual import MonitorResult, RelayChange, socket_follow_relay, socket_monitor, socket_monitor_many, socket_watch_many

__all__ = [
    "CallbackFailed",
    "EmergencyResult",
    "MonitorResult",
    "RelayChange",
    "StartResult",
    "StopResult",
    "callback_deliver",
    "callback_schedule",
    "emergency_stop",
    "instance_delete",
    "instance_renew",
    "instance_start",
    "instance_start_wait_stop",
    "instance_stop_planned",
    "instance_stop",
    "instance_stop_timeout",
    "instance_stop_unattended",
    "instances_stop",
    "recover",
    "socket_follow_relay",
    "socket_monitor",
    "socket_monitor_many",
    "socket_watch_many",
]
