"""The /api/download file: the whole state as JSON, or an instances report as CSV, streamed, sealed and signed.

Memory stays flat whatever the history size: instances and their meter readings come from
one merged pass (selectors.instance_list_with_meter), no query per instance.
"""
import csv
import json
from collections.abc import Iterator
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from audit.exports import ExportSealer, json_text
from audit.ledger import ledger_head
from audit.models import actor_text
from audit.signing import signing_key

from sockets.models import Socket
from sockets.selectors import socket_get

from .api.serializers import INSTANCE_VALUES, instance_representation, timestamp_text
from .models import Instance
from .selectors import InstanceMeter, instance_list_between, instance_list_with_meter, server_status

CHUNK = 64 * 1024  # characters a streamed piece gathers: one per row cost the response a bytes conversion (and a write) each

CSV_COLUMNS = ["id", "socket", "start", "stop", "duration_s", "stop_reason", "energy_wh", "peak_current_a", "socket_energy_wh",
               "label", "instance_url", "started_by", "stopped_by", "powered_on_by", "powered_off_by"]


def download_response(*, socket: Socket | None, since: datetime | None, until: datetime | None, fmt: str) -> StreamingHttpResponse:
    """A streamed attachment: `server_state.json` or `instances.csv`."""
    instances = instance_list_between(socket=socket, since=since, until=until)
    if fmt == "csv":
        return attachment(instances_csv(instances=instances), content_type="text/csv", filename="instances.csv")
    return attachment(server_state_json(socket=socket, instances=instances), content_type="application/json", filename="server_state.json")


def attachment(body: Iterator[str], *, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_chunked(body), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _chunked(pieces: Iterator[str]) -> Iterator[str]:
    """The same text in pieces of about CHUNK characters (memory stays bounded by one)."""
    gathered, size = [], 0
    for piece in pieces:
        gathered.append(piece)
        size += len(piece)
        if size >= CHUNK:
            yield "".join(gathered)
            gathered, size = [], 0
    if gathered:
        yield "".join(gathered)


def server_state_json(*, socket: Socket | None, instances: QuerySet[Instance]) -> Iterator[str]:
    """`{"ledger": head, "server": {...}, "instances": {id: instance + its seal}, "signature": {...}}`, one instance
    at a time; the server part is `socket`'s or the default's. Sealed and signed as audit.exports describes."""
    encode = DjangoJSONEncoder().encode
    ledger, server = encode(_ledger_cut()), encode(server_status(socket=socket or socket_get()))
    sealer = ExportSealer(key=signing_key(), fmt="json", header=ledger + "|" + server)
    checkpoints = []
    yield '{"ledger": ' + ledger + ', "server": ' + server + ', "instances": {'
    timestamp = timestamp_text()
    for index, row in enumerate(instance_list_with_meter(instances=instances, values=INSTANCE_VALUES)):
        key, body = encode(row["pk"]), encode(instance_representation(row, meter=row["meter"], timestamp=timestamp))
        seal, checkpoint = sealer.add(key + ": " + body)
        if checkpoint:
            checkpoints.append({"records": sealer.records, "signature": checkpoint})
        yield ("," if index else "") + key + ": " + body[:-1] + ', "seal": "' + seal + '"}'
    head = json.loads(ledger)
    signature = {"algorithm": "Ed25519", "publicKey": sealer.public_key, "records": sealer.records, "checkpoints": checkpoints,
                 "value": sealer.final(ledger_seq=head["seq"], ledger_hash=head["hash"])}
    yield '}, "signature": ' + encode(signature) + "}\n"


def _ledger_cut() -> dict:
    """The ledger head the file is cut at: every event up to it happened before the file was made."""
    head = ledger_head()
    return {"seq": head.seq, "hash": head.hash, "at": timezone.now()}


class _Echo:
    def write(self, value: str) -> str:
        return value


def instances_csv(*, instances: QuerySet[Instance]) -> Iterator[str]:
    """One row per instance (CSV_COLUMNS) with its seal; `#checkpoint` lines, and a `#signature` trailer with the ledger head."""
    writer = csv.writer(_Echo())
    header = [*CSV_COLUMNS, "seal"]
    sealer = ExportSealer(key=signing_key(), fmt="csv", header=json_text(header))
    head = _ledger_cut()
    yield writer.writerow(header)
    for row in instance_list_with_meter(instances=instances, values=CSV_VALUES):
        cells = [_cell(value) for value in _csv_row(row=row, meter=row["meter"])]
        seal, checkpoint = sealer.add(json_text(cells))
        yield writer.writerow([*cells, seal])
        if checkpoint:
            yield writer.writerow(["#checkpoint", sealer.records, checkpoint])
    yield writer.writerow(["#signature", sealer.records, head["seq"], head["hash"], sealer.final(ledger_seq=head["seq"], ledger_hash=head["hash"])])


CSV_VALUES = ("id", "socket__name", "started_at", "stopped_at", "stop_reason", "client_label", "client_instance_url", "started_by",
              "stopped_by", "power_period_id", "power_period__power_on_by", "power_period__power_off_by")


def _csv_row(*, row: dict, meter: InstanceMeter) -> list:
    """One CSV_COLUMNS row from an instance's CSV_VALUES."""
    started, stopped = row["started_at"], row["stopped_at"]
    duration = round((stopped - started).total_seconds(), 3) if stopped else None
    period = row["power_period_id"] is not None
    return [
        row["id"], row["socket__name"], started.isoformat(), stopped.isoformat() if stopped else None, duration,
        row["stop_reason"], meter.energy_consumed_wh, max(meter.currents, default=None),
        meter.socket_energy_wh, row["client_label"], row["client_instance_url"],
        actor_text(row["started_by"]) if row["started_by"] else None,  # None: before the ledger, or started by the service's own code
        None if stopped is None else actor_text(row["stopped_by"]),  # Instance.is_running
        row["power_period__power_on_by"] if period else None, row["power_period__power_off_by"] if period else None,
    ]


def _cell(value) -> str:
    """A CSV cell as a reader gets it back (the seal covers exactly that)."""
    return "" if value is None else str(value)
