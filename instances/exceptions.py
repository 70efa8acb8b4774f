"""Domain errors of instances."""
from sockets.exceptions import SmartSocketError


class InstanceNotFound(SmartSocketError):
    code = "instance_not_found"
    message = "no such instance"


class InstanceIdMissing(SmartSocketError):
    code = "instance_id_missing"
    message = "instanceId is required"
