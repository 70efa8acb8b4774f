"""The /api/download file: the whole state as JSON, or an instances report as CSV, streamed.

Memory stays flat whatever the history size: instances and their samples are read with
two database cursors in the same order and merged, so at most one instance's currents
are held at a time and no query runs per instance.
"""
import csv
from collections.abc import Iterator
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse
from django.utils import timezone

from sockets.models import Socket
from sockets.selectors import socket_get

from .api.serializers import InstanceSerializer
from .models import Instance
from .selectors import instance_list, server_status

CSV_COLUMNS = ["id", "socket", "start", "stop", "duration_s", "stop_reason", "energy_wh", "peak_current_a"]
CHUNK = 2000
INSTANCE_CHUNK = 200  # model objects are heavier than the (id, current) pairs


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


def instance_list_between(*, socket: Socket | None, since: datetime | None, until: datetime | None) -> QuerySet[Instance]:
    """Instances (deleted ones too) that ran at some time in [since, until], oldest first."""
    instances = instance_list(socket=socket, include_deleted=True)
    if since is not None:
        instances = instances.exclude(stopped_at__lt=since)
    if until is not None:
        instances = instances.filter(started_at__lte=until)
    return instances


def instances_with_currents(*, instances: QuerySet[Instance]) -> Iterator[tuple[Instance, list[float]]]:
    """Each instance with the currents (A) sampled on its socket while it ran, in one pass.

    Two cursors in the same order: the instances, and (instance id, current) pairs from a
    join of each instance with its socket's samples in [start, stop or now]. Instances
    created after `now` are left out of both, so the two streams stay aligned.
    """
    now = timezone.now()
    instances = instances.select_related("socket").filter(started_at__lte=now).order_by("started_at", "pk")
    # Both conditions in one filter() apply to the same joined sample row.
    pairs = instances.filter(
        socket__samples__taken_at__gte=F("started_at"),
        socket__samples__taken_at__lte=Coalesce("stopped_at", Value(now)),
    ).order_by("started_at", "pk", "socket__samples__taken_at", "socket__samples__pk").values_list("pk", "socket__samples__current_a")
    pair_stream = pairs.iterator(chunk_size=CHUNK)
    pending = next(pair_stream, None)
    for instance in instances.iterator(chunk_size=INSTANCE_CHUNK):
        currents = []
        while pending is not None and pending[0] == instance.pk:
            currents.append(pending[1])
            pending = next(pair_stream, None)
        yield instance, currents


class _ReportInstanceSerializer(InstanceSerializer):
    """The API's instance JSON, with the currents handed in instead of queried per instance."""

    def get_amperagePerSecond(self, instance: Instance) -> list[float]:
        return self.context["currents"]


def server_state_json(*, socket: Socket | None, instances: QuerySet[Instance]) -> Iterator[str]:
    """`{"server": {...}, "instances": {id: instance}}`, one instance at a time; the server part is `socket`'s or the default's."""
    encode = DjangoJSONEncoder().encode
    yield '{"server": ' + encode(server_status(socket=socket or socket_get())) + ', "instances": {'
    context = {"currents": []}
    serializer = _ReportInstanceSerializer(context=context)  # one for all rows: its fields are built once
    for index, (instance, currents) in enumerate(instances_with_currents(instances=instances)):
        context["currents"] = currents
        yield ("," if index else "") + encode(instance.pk) + ": " + encode(serializer.to_representation(instance))
    yield "}}\n"


class _Echo:
    def write(self, value: str) -> str:
        return value


def instances_csv(*, instances: QuerySet[Instance]) -> Iterator[str]:
    """One row per instance: id, socket, start, stop, duration s, stop reason, energy Wh, peak current A."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for instance, currents in instances_with_currents(instances=instances):
        yield writer.writerow(_csv_row(instance=instance, peak_current_a=max(currents, default=None)))


def _csv_row(*, instance: Instance, peak_current_a: float | None) -> list:
    duration = round((instance.stopped_at - instance.started_at).total_seconds(), 3) if instance.stopped_at else ""
    return [
        instance.pk, instance.socket.name, instance.started_at.isoformat(),
        instance.stopped_at.isoformat() if instance.stopped_at else "", duration,
        instance.stop_reason, _blank_if_none(instance.energy_consumed_wh), _blank_if_none(peak_current_a),
    ]


def _blank_if_none(value):
    return "" if value is None else value
