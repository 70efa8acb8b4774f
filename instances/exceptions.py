"""Domain errors of instances."""
from sockets.exceptions import SmartSocketError


class InstanceNotFound(SmartSocketError):
    code = "instance_not_found"
    message = "no such instance"


class InstanceIdMissing(SmartSocketError):
    code = "instance_id_missing"
    message = "instanceId is required"


class InstanceNotRunning(SmartSocketError):
    """A lease renewal for an instance that has already stopped (its holder lost the plug)."""

    code = "instance_not_running"
    message = "the instance is not running"
