"""OpenAPI: operation ids, and post-processing of what every operation shares — JSON errors and who may call it."""
from drf_spectacular.openapi import AutoSchema

# Actions routed both with an id in the path and without one (CPEE's literal `:instanceId` and
# the id as an argument, or an emergency stop of the socket as a whole).
ID_OPTIONAL_ACTIONS = {"retrieve", "update", "destroy", "emergency_stop"}


class SmartSocketSchema(AutoSchema):
    """drf-spectacular's schema with one operation id per route: `…_by_argument` where the id is not in the path."""

    def get_operation_id(self):
        operation_id = super().get_operation_id()
        if "{" not in self.path and getattr(self.view, "action", None) in ID_OPTIONAL_ACTIONS:
            return f"{operation_id}_by_argument"
        return operation_id


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer: a message, a stable code, and structured fields for some errors.",
    "properties": {"message": {"type": "string"}, "code": {"type": "string"}},
    "required": ["message", "code"],
    "additionalProperties": True,
}
ERROR_RESPONSE = {
    "description": "An error (DESIGN §4): 401 no token from outside the trusted networks, 404 unknown instance or socket, "
    "409 emergency-stopped or device in the wrong state, 422 bad parameter, 500 device unreachable or garbled.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def document_errors_and_access(result, generator, request, public):
    """Add the JSON error answer to every operation and say that trusted networks need no credentials."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            operation["responses"].setdefault("default", ERROR_RESPONSE)
            if operation.get("security") and {} not in operation["security"]:
                operation["security"].append({})  # callers from SMARTSOCKET_TRUSTED_NETWORKS
    return result
