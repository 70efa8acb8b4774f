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
    "description": "Any other error, as JSON with a stable code (e.g. 405 method_not_allowed, 415 unsupported_media_type).",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
# What each status means, and the codes it carries (smartsocket_site.api.STATUS is the mapping).
ERRORS = {
    "400": ("The body is not JSON, or nested too deeply.", ["parse_error"]),
    "401": ("No token from outside the trusted networks, or a wrong token.", ["not_authenticated", "authentication_failed"]),
    "404": ("No such instance or socket.", ["instance_not_found", "socket_not_found"]),
    "409": ("The socket is emergency-stopped, the plug reports the wrong state, or the instance has stopped.",
            ["socket_emergency_stopped", "socket_power_failed", "instance_not_running"]),
    "422": ("A bad parameter (its name in `fields`), a missing id, or more than 8 callbacks.", ["invalid_parameter", "instance_id_missing"]),
    "500": ("The plug could not be reached or answered garbage; nothing was created.", ["socket_device_error"]),
}
CPEE_HEADERS = [
    {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("CPEE-LABEL", "The calling process step's label; kept with the instance (cut to 255 characters)."),
        ("CPEE-INSTANCE-URL", "The calling process instance; kept with the instance (cut to 500 characters)."),
        ("CPEE-INSTANCE-UUID", "Kept with the instance (64 characters)."),
        ("CPEE-ACTIVITY", "Kept with the instance (64 characters)."),
    )
]
CALLBACK_HEADER = {
    "name": "CPEE-CALLBACK", "in": "header", "required": False, "schema": {"type": "string", "format": "uri"},
    "description": "Any header whose name ends in `-callback` holding an http(s) URL (at most 8 per request; "
    "allowed hosts only): it is echoed as `<name>: true`, and the URL gets a PUT when the wait (or the run) ends.",
}
# operationId (without `_by_argument`) → summary, error statuses, extra header parameters.
OPERATIONS = {
    "instance_create": ("Start an instance (powers the plug ON if it is the first holder)", ["404", "409", "422", "500"], CPEE_HEADERS),
    "instance_retrieve": ("Read one instance (or, without an id, list them)", ["404"], []),
    "instance_update": ("Stop an instance (the last holder powers the plug OFF); repeat stops are no-ops", ["404", "409", "422", "500"], []),
    "instance_destroy": ("Stop the instance if it runs, then hide it (kept for audit)", ["404", "409", "422", "500"], []),
    "instance_renew_update": ("Renew an instance's lease: its deadline becomes now + emergencyStopTimeout", ["404", "409", "422"], []),
    "wait_retrieve": ("Wait asynchronously: answers now, calls each callback URL back after `duration`", ["422"], [CALLBACK_HEADER]),
    "emergency_stop_create": ("Emergency stop: stop every instance of the socket, power it OFF, lock it", ["404", "500"], []),
    "recover_update": ("Lift the emergency lock of a socket", ["404"], []),
    "server_status_retrieve": ("Socket-wide state: emergency lock, energy, running instances, power periods", ["404"], []),
    "download_retrieve": ("Download the whole history as a file (JSON or CSV), streamed", ["404", "422"], []),
    "start_wait_stop_create": ("Start now, stop after `duration`, call back when stopped", ["404", "409", "422", "500"], [*CPEE_HEADERS, CALLBACK_HEADER]),
    "sockets_list": ("The plugs", [], []),
    "sockets_retrieve": ("One plug: power, lock, failsafe, power-loss behaviour", ["404"], []),
    "sockets_power_periods_list": ("A plug's power periods, newest first", ["404"], []),
    "sockets_samples_list": ("A plug's meter readings, newest first", ["404"], []),
    "sockets_rollups_list": ("A plug's readings older than the retention, per minute or hour, oldest first", ["404", "422"], []),
    "push_shelly_retrieve": ("A Shelly's webhook: its switch changed (the relay is re-read); for devices, the secret is the credential", ["404"], []),
    "push_shelly_create": ("The same webhook, POSTed", ["404"], []),
    "events_list": ("The audit ledger: events, newest first (filter by socket, kind, since, until)", ["404", "422"], []),
    "events_verify_retrieve": ("Verify the ledger's hash chain from the first event to the head", [], []),
    "events_public_key_retrieve": ("The Ed25519 public key downloads are signed with", [], []),
}
INSTANCE_EXAMPLE = {"id": "kX2d9QmV7rTzLw0e", "socket": "default", "emergencyStopTimeout": 60000, "isRunning": True,
                    "deadline": "2026-12-01T10:16:02Z", "startTimestamp": "2026-12-01T10:15:02Z", "stopTimestamp": None,
                    "stopReason": None, "energyConsumedWh": 0.8, "socketEnergyWh": 0.8, "label": "Mix sample",
                    "startedBy": {"user": "cpee", "via": "token", "ip": "10.0.0.5"}, "stoppedBy": None}
SOCKET_EXAMPLE = {"name": "default", "driver": "tasmota_http", "address": "http://192.168.1.50", "observedPower": "ON",
                  "desiredPower": "ON", "isOnline": True, "isEmergencyStopped": False, "runningInstances": 1,
                  "failsafe": {"supported": True, "armed": True, "expiresAt": "2026-12-01T10:16:07Z"}, "maxOnSeconds": None,
                  "afterPowerLoss": "last"}
STOPPED_EXAMPLE = {**INSTANCE_EXAMPLE, "isRunning": False, "stopTimestamp": "2026-12-01T10:15:40Z", "stopReason": "requested", "energyConsumedWh": 1.2,
                   "socketEnergyWh": 1.2, "stoppedBy": {"user": "cpee", "via": "token", "ip": "10.0.0.5"}}
EVENT_EXAMPLE = {"id": 412, "seq": 412, "at": "2026-12-01T10:15:02Z", "kind": "instance.start", "socket": "default", "instance": INSTANCE_EXAMPLE["id"],
                 "reason": "", "actor": {"user": "cpee", "via": "token", "ip": "10.0.0.5"}, "client": {"label": "Mix sample"},
                 "data": {"emergencyStopTimeout": 60000, "triggeredPowerOn": True}, "contentHash": "5d41…", "previousHash": "a3f1…", "hash": "9c2e…"}
# operationId (without `_by_argument`) → (example request body or None, example 200 answer).
EXAMPLES = {
    "instance_create": ({"emergencyStopTimeout": 60000}, {"triggeredPowerOn": True, "instance": INSTANCE_EXAMPLE}),
    "instance_retrieve": (None, {"instance": INSTANCE_EXAMPLE}),
    "instance_update": ({"instanceId": INSTANCE_EXAMPLE["id"]}, {"triggeredPowerOff": True, "instance": STOPPED_EXAMPLE}),
    "instance_destroy": ({"instanceId": INSTANCE_EXAMPLE["id"]}, {"triggeredPowerOff": True, "instance": STOPPED_EXAMPLE}),
    "instance_renew_update": ({"emergencyStopTimeout": 120000}, {"instance": {**INSTANCE_EXAMPLE, "emergencyStopTimeout": 120000}}),
    "wait_retrieve": (None, {"waiting": True}),
    "emergency_stop_create": ({"socket": "default"}, {"message": "socket default emergency-stopped", "stoppedInstances": [INSTANCE_EXAMPLE["id"]], "instanceId": None}),
    "recover_update": ({"socket": "default"}, {"message": "socket default recovered"}),
    "start_wait_stop_create": ({"duration": 30, "emergencyStopTimeout": 60000}, {"instance": INSTANCE_EXAMPLE}),
    "server_status_retrieve": (None, {"socket": "default", "isEmergencyStopped": False, "energyToday": 0.462, "initialEnergy": 94.031,
                                      "runningInstances": [INSTANCE_EXAMPLE["id"]], "instancesStopping": [],
                                      "latestEmergencyStopTimeoutInstanceId": None, "power": "ON", "powerW": 76.0,
                                      "powerStatus": [{"powerOn": {"instanceId": INSTANCE_EXAMPLE["id"], "timestamp": "2026-12-01T10:15:02Z"}, "powerOff": None}],
                                      "currentTimestamp": "2026-12-01T10:15:30Z"}),
    "download_retrieve": (None, {"ledger": {"seq": 412, "hash": "9c2e…", "at": "2026-12-01T10:16:00Z"}, "server": {"socket": "default", "isEmergencyStopped": False},
                                 "instances": {INSTANCE_EXAMPLE["id"]: {**STOPPED_EXAMPLE, "seal": "77ab…"}},
                                 "signature": {"algorithm": "Ed25519", "publicKey": "MCow…", "records": 1, "checkpoints": [], "value": "k3J9…"}}),
    "events_list": (None, {"count": 1, "next": None, "previous": None, "results": [EVENT_EXAMPLE]}),
    "events_verify_retrieve": (None, {"valid": True, "events": 412, "firstInvalidEvent": None, "reason": "", "head": {"seq": 412, "hash": "9c2e…"}}),
    "events_public_key_retrieve": (None, {"algorithm": "Ed25519", "publicKey": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "encoding": "base64 of the raw 32-byte key"}),
    "sockets_list": (None, [SOCKET_EXAMPLE]),
    "sockets_retrieve": (None, SOCKET_EXAMPLE),
    "sockets_power_periods_list": (None, {"count": 1, "next": None, "previous": None, "results": [
        {"socket": "default", "powerOnAt": "2026-12-01T10:15:02Z", "powerOnBy": INSTANCE_EXAMPLE["id"], "powerOnCause": "requested",
         "powerOffAt": "2026-12-01T10:15:40Z", "powerOffBy": INSTANCE_EXAMPLE["id"], "powerOffCause": "requested"}]}),
    "sockets_samples_list": (None, {"count": 1, "next": None, "previous": None, "results": [
        {"socket": "default", "takenAt": "2026-12-01T10:15:07Z", "isOn": True, "powerW": 76.0, "voltageV": 233.0, "currentA": 0.436,
         "todayKwh": 0.462, "totalKwh": 94.493}]}),
    "push_shelly_retrieve": (None, {"socket": "bench-2", "change": "manual_off"}),
    "push_shelly_create": (None, {"socket": "bench-2", "change": None}),
    "sockets_rollups_list": (None, {"count": 1, "next": None, "previous": None, "results": [
        {"resolution": "minute", "bucketStart": "2026-10-01T10:15:00Z", "samples": 12, "minW": 71.0, "maxW": 80.0, "meanW": 76.2,
         "maxCurrentA": 0.46, "energyWh": 1.27}]}),
}


def document_errors_and_access(result, generator, request, public):
    """Summaries, each operation's real error answers with their codes, the CPEE headers, and that trusted networks need no credentials."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            summary, errors, headers = OPERATIONS.get(operation["operationId"].removesuffix("_by_argument"), ("", [], []))
            if summary:
                operation["summary"] = summary
            for status in ["400", "401", *errors] if operation.get("requestBody") else ["401", *errors]:
                text, codes = ERRORS[status]
                operation["responses"].setdefault(status, {
                    "description": f"{text} `code`: {', '.join(codes)}.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                                     "example": {"message": text, "code": codes[0]}}},
                })
            operation["responses"].setdefault("default", ERROR_RESPONSE)
            operation.setdefault("parameters", []).extend(headers)
            if operation.get("security") and {} not in operation["security"]:
                operation["security"].append({})  # callers from SMARTSOCKET_TRUSTED_NETWORKS
            _add_examples(operation)
    return result


def _add_examples(operation: dict) -> None:
    request_example, answer = EXAMPLES.get(operation["operationId"].removesuffix("_by_argument"), (None, None))
    if answer is not None and "application/json" in operation["responses"]["200"].get("content", {}):
        operation["responses"]["200"]["content"]["application/json"]["example"] = answer
    for media in (operation.get("requestBody") or {}).get("content", {}).values() if request_example else ():
        media["example"] = request_example
