"""Domain errors of the device side; smartsocket_site.api maps them to HTTP answers."""


class SmartSocketError(Exception):
    """Base of every domain error: a stable `code`, a message and structured fields."""

    code = "error"
    message = "error"

    def __init__(self, message: str | None = None, **data):
        self.data = data
        super().__init__(message or self.message)


class InvalidParameter(SmartSocketError):
    code = "invalid_parameter"
    message = "invalid parameter"


class SocketNotFound(SmartSocketError):
    code = "socket_not_found"
    message = "no such socket"


class SocketEmergencyStopped(SmartSocketError):
    code = "socket_emergency_stopped"
    message = "the socket is emergency-stopped; PUT /api/recover first"


class SocketPowerFailed(SmartSocketError):
    """The device answered, but its state is not the one we commanded."""

    code = "socket_power_failed"
    message = "the device did not switch to the requested state"


class SocketDeviceError(SmartSocketError):
    """The device could not be reached or gave an answer we cannot use."""

    code = "socket_device_error"
    message = "the device could not be reached or answered garbage"
