"""The /api/download file: the whole state as JSON, or an instances report as CSV, streamed."""
import csv
from collections.abc import Iterator
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse

from sockets.models import Socket
from sockets.selectors import socket_get, socket_list

from .api.serializers import InstanceSerializer
from .selectors import instance_list, server_status

CSV_COLUMNS = ["id", "socket", "start", "stop", "duration_s", "stop_reason", "energy_wh", "peak_current_a"]


def download_response(*, socket: Socket | None, since: datetime | None, until: datetime | None, fmt: str) -> StreamingHttpResponse:
    """A streamed attachment: `server_state.json` or `instances.csv`."""
    if fmt == "csv":
        body, content_type, filename = instances_csv(socket=socket, since=since, until=until), "text/csv", "instances.csv"
    else:
        body, content_type, filename = server_state_json(socket=socket, since=since, until=until), "application/json", "server_state.json"
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _instances(*, socket, since, until):
    instances = instance_list(socket=socket, include_deleted=True)
    if since is not None:
        instances = instances.exclude(stopped_at__lt=since)
    if until is not None:
        instances = instances.filter(started_at__lte=until)
    return instances.iterator(chunk_size=500)


def server_state_json(*, socket: Socket | None, since: datetime | None, until: datetime | None) -> Iterator[str]:
    """`{"server": {...}, "instances": {id: instance}}`, one instance at a time."""
    encode = DjangoJSONEncoder().encode
    server = server_status(socket=socket or socket_get())
    yield '{"server": ' + encode(server) + ', "sockets": ' + encode([s.name for s in socket_list()]) + ', "instances": {'
    for index, instance in enumerate(_instances(socket=socket, since=since, until=until)):
        yield ("," if index else "") + encode(instance.pk) + ": " + encode(InstanceSerializer(instance).data)
    yield "}}\n"


class _Echo:
    def write(self, value: str) -> str:
        return value


def instances_csv(*, socket: Socket | None, since: datetime | None, until: datetime | None) -> Iterator[str]:
    """One row per instance: id, socket, start, stop, duration s, stop reason, energy Wh, peak current A."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for instance in _instances(socket=socket, since=since, until=until):
        currents = InstanceSerializer().get_amperagePerSecond(instance)
        duration = (instance.stopped_at - instance.started_at).total_seconds() if instance.stopped_at else ""
        yield writer.writerow([
            instance.pk, instance.socket.name, instance.started_at.isoformat(),
            instance.stopped_at.isoformat() if instance.stopped_at else "", duration,
            instance.stop_reason, instance.energy_consumed_wh if instance.energy_consumed_wh is not None else "",
            max(currents) if currents else "",
        ])
