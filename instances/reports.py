"""The /api/download file: the whole state as JSON, or an instances report as CSV, streamed.

Memory stays flat whatever the history size: instances and their meter readings come from
one merged pass (selectors.instance_list_with_meter), no query per instance.
"""
import csv
from collections.abc import Iterator
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from sockets.models import Socket
from sockets.selectors import socket_get

from .api.serializers import InstanceSerializer
from .models import Instance
from .selectors import InstanceMeter, instance_list_between, instance_list_with_meter, server_status

CSV_COLUMNS = ["id", "socket", "start", "stop", "duration_s", "stop_reason", "energy_wh", "peak_current_a"]


def download_response(*, socket: Socket | None, since: datetime | None, until: datetime | None, fmt: str) -> StreamingHttpResponse:
    """A streamed attachment: `server_state.json` or `instances.csv`."""
    instances = instance_list_between(socket=socket, since=since, until=until)
    if fmt == "csv":
        return attachment(instances_csv(instances=instances), content_type="text/csv", filename="instances.csv")
    return attachment(server_state_json(socket=socket, instances=instances), content_type="application/json", filename="server_state.json")


def attachment(body: Iterator[str], *, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def server_state_json(*, socket: Socket | None, instances: QuerySet[Instance]) -> Iterator[str]:
    """`{"server": {...}, "instances": {id: instance}}`, one instance at a time; the server part is `socket`'s or the default's."""
    encode = DjangoJSONEncoder().encode
    yield '{"server": ' + encode(server_status(socket=socket or socket_get())) + ', "instances": {'
    serializer = InstanceSerializer()  # one for all rows: its fields are built once
    for index, instance in enumerate(instance_list_with_meter(instances=instances)):
        yield ("," if index else "") + encode(instance.pk) + ": " + encode(serializer.to_representation(instance))
    yield "}}\n"


class _Echo:
    def write(self, value: str) -> str:
        return value


def instances_csv(*, instances: QuerySet[Instance]) -> Iterator[str]:
    """One row per instance: id, socket, start, stop, duration s, stop reason, energy Wh, peak current A."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for instance in instance_list_with_meter(instances=instances):
        yield writer.writerow(_csv_row(instance=instance, meter=instance.meter))


def _csv_row(*, instance: Instance, meter: InstanceMeter) -> list:
    duration = round((instance.stopped_at - instance.started_at).total_seconds(), 3) if instance.stopped_at else ""
    return [
        instance.pk, instance.socket.name, instance.started_at.isoformat(),
        instance.stopped_at.isoformat() if instance.stopped_at else "", duration,
        instance.stop_reason, _blank_if_none(meter.energy_consumed_wh), _blank_if_none(max(meter.currents, default=None)),
    ]


def _blank_if_none(value):
    return "" if value is None else value
