"""Thin HTTP views: validate arguments, call one service, render the result."""
from datetime import timedelta

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from audit.actors import actor_of
from smartsocket_site.access import callback_url_allowed
from smartsocket_site.api import request_params
from sockets.exceptions import InvalidParameter
from sockets.selectors import socket_get

from .. import reports
from ..exceptions import InstanceIdMissing
from ..models import CallbackKind
from ..selectors import instance_get, instance_list, instance_list_with_meter, server_status
from ..services import (
    callback_schedule,
    emergency_stop,
    instance_delete,
    instance_renew,
    instance_start,
    instance_start_wait_stop,
    instance_stop,
    recover,
)
from .serializers import (
    DownloadInputSerializer,
    InstanceIdSerializer,
    InstanceListOutputSerializer,
    InstanceOutputSerializer,
    InstanceSerializer,
    RenewInputSerializer,
    SocketArgSerializer,
    StartInputSerializer,
    StartOutputSerializer,
    StartWaitStopInputSerializer,
    StopOutputSerializer,
    WaitInputSerializer,
)

CLIENT_HEADERS = {"instance_url": "CPEE-INSTANCE-URL", "instance_uuid": "CPEE-INSTANCE-UUID", "activity": "CPEE-ACTIVITY", "label": "CPEE-LABEL"}
MAX_CALLBACKS = 8  # DESIGN §4/§6.2: every request-controlled fan-out is capped
INSTANCE_ID = OpenApiParameter("instanceId", str, description="The instance id; CPEE sends it as an argument and `:instanceId` in the path.")


def validated(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    serializer = serializer_class(data=request_params(request))
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def client_of(request: Request) -> dict[str, str]:
    """Who is calling, as CPEE tells it in its headers."""
    return {key: request.headers.get(header, "")[:500] for key, header in CLIENT_HEADERS.items()}


def instance_id_of(request: Request, pk: str | None) -> str | None:
    """The id from the path, unless it is CPEE's literal `:instanceId`; else from the arguments."""
    if pk and not pk.startswith(":"):
        return pk
    return validated(InstanceIdSerializer, request).get("instanceId")


def required_instance_id(request: Request, pk: str | None) -> str:
    instance_id = instance_id_of(request, pk)
    if instance_id is None:
        raise InstanceIdMissing()
    return instance_id


def callback_headers(request: Request) -> list[tuple[str, str]]:
    """Every `*-callback` header holding a URL, as (header name, URL); a value without `://` is no URL and ignored.

    Raises InvalidParameter: more than MAX_CALLBACKS, a scheme other than http(s) (in any
    case), or a URL the SSRF guard refuses — before anything is stored or started.
    """
    callbacks = [
        (key[5:].replace("_", "-"), value)
        for key, value in request.META.items()
        if key.startswith("HTTP_") and key.endswith("_CALLBACK") and "://" in value
    ]
    if len(callbacks) > MAX_CALLBACKS:
        raise InvalidParameter(f"{len(callbacks)} *-callback headers; at most {MAX_CALLBACKS} per request", callbacks=len(callbacks), limit=MAX_CALLBACKS)
    for header, url in callbacks:
        if not url.lower().startswith(("http://", "https://")):
            raise InvalidParameter(f"{header}: only http(s) callback URLs are supported", header=header, url=url[:200])
        if not callback_url_allowed(url):
            raise InvalidParameter(f"{header}: callback URL not allowed (see SMARTSOCKET_CALLBACK_ALLOWED_HOSTS/NETWORKS)", header=header, url=url[:200])
    return callbacks


def echo_callbacks(response: Response, callbacks: list[tuple[str, str]]) -> Response:
    for header, _url in callbacks:
        response[header] = "true"
    return response


class InstanceViewSet(viewsets.GenericViewSet):
    """Start, read, stop and delete instances (the seed's `/api/instance`)."""

    serializer_class = InstanceSerializer

    @extend_schema(request=StartInputSerializer, responses={200: StartOutputSerializer})  # 200, not 201: the seed's answer
    def create(self, request: Request) -> Response:
        args = validated(StartInputSerializer, request)
        result = instance_start(socket_name=args.get("socket"), timeout_ms=args.get("emergencyStopTimeout"), client=client_of(request),
                                actor=actor_of(request))
        return Response(StartOutputSerializer(result).data)

    @extend_schema(parameters=[INSTANCE_ID], responses=PolymorphicProxySerializer(
        component_name="InstanceOrList", serializers=[InstanceOutputSerializer, InstanceListOutputSerializer], resource_type_field_name=None,
    ))  # without an id: every visible instance
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        instance_id = instance_id_of(request, pk)
        if instance_id is None:
            return Response({"instances": InstanceSerializer(list(instance_list_with_meter(instances=instance_list())), many=True).data})
        return Response(InstanceOutputSerializer(instance_get(instance_id=instance_id)).data)

    @extend_schema(parameters=[INSTANCE_ID], request=None, responses=StopOutputSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        instance_id = required_instance_id(request, pk)
        return Response(StopOutputSerializer(instance_stop(instance_id=instance_id, actor=actor_of(request))).data)

    @extend_schema(parameters=[INSTANCE_ID], responses={200: StopOutputSerializer})  # 200 with a body, not 204
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        instance_id = required_instance_id(request, pk)
        return Response(StopOutputSerializer(instance_delete(instance_id=instance_id, actor=actor_of(request))).data)

    @extend_schema(
        parameters=[INSTANCE_ID], request=RenewInputSerializer, responses=InstanceOutputSerializer,
        description="Renew the lease: the deadline becomes now + emergencyStopTimeout (the new one if given). "
        "404 unknown id; 409 the instance has stopped (e.g. its deadline came first); 422 no emergencyStopTimeout.",
    )
    def renew(self, request: Request, pk: str | None = None) -> Response:
        instance_id = required_instance_id(request, pk)
        args = validated(RenewInputSerializer, request)
        return Response(InstanceOutputSerializer(instance_renew(instance_id=instance_id, timeout_ms=args.get("emergencyStopTimeout"), actor=actor_of(request))).data)


class ServerViewSet(viewsets.GenericViewSet):
    """Socket-wide calls of the seed: wait, emergency stop, recover, status, download, start-wait-stop."""

    serializer_class = SocketArgSerializer

    @extend_schema(parameters=[WaitInputSerializer], responses={200: {"type": "object", "properties": {"waiting": {"type": "boolean"}}}})
    def wait(self, request: Request) -> Response:
        args = validated(WaitInputSerializer, request)
        callbacks = callback_headers(request)
        callback_schedule(kind=CallbackKind.WAIT, urls=callbacks, due_at=timezone.now() + timedelta(seconds=args["duration"]), payload={"waiting": False})
        return echo_callbacks(Response({"waiting": True}), callbacks)

    @extend_schema(parameters=[INSTANCE_ID], request=SocketArgSerializer)
    def emergency_stop(self, request: Request, pk: str | None = None) -> Response:
        instance_id = instance_id_of(request, pk)
        args = validated(SocketArgSerializer, request)
        if instance_id is not None:
            socket = instance_get(instance_id=instance_id).socket if "socket" not in args else socket_get(name=args["socket"])
        else:
            socket = socket_get(name=args.get("socket"))
        result = emergency_stop(socket=socket, triggered_by=instance_id, actor=actor_of(request))
        return Response({"message": f"socket {socket.name} emergency-stopped", "stoppedInstances": result.stopped_instances, "instanceId": instance_id})

    @extend_schema(request=SocketArgSerializer)
    def recover(self, request: Request) -> Response:
        socket = recover(socket=socket_get(name=validated(SocketArgSerializer, request).get("socket")), actor=actor_of(request))
        return Response({"message": f"socket {socket.name} recovered"})

    @extend_schema(parameters=[SocketArgSerializer])
    def status(self, request: Request) -> Response:
        return Response(server_status(socket=socket_get(name=validated(SocketArgSerializer, request).get("socket"))))

    @extend_schema(parameters=[DownloadInputSerializer], responses={
        (200, "application/json"): {"type": "object", "properties": {"server": {"type": "object"}, "instances": {"type": "object"}}, "required": ["server", "instances"]},
        (200, "text/csv"): bytes,
    })
    def download(self, request: Request) -> StreamingHttpResponse:
        args = validated(DownloadInputSerializer, request)
        socket = socket_get(name=args["socket"]) if "socket" in args else None
        return reports.download_response(socket=socket, since=args.get("since"), until=args.get("until"), fmt=args["format"])

    @extend_schema(request=StartWaitStopInputSerializer, responses=InstanceOutputSerializer)
    def start_wait_stop(self, request: Request) -> Response:
        args = validated(StartWaitStopInputSerializer, request)
        callbacks = callback_headers(request)
        result = instance_start_wait_stop(
            socket=socket_get(name=args.get("socket")), duration_s=args["duration"],
            timeout_ms=args.get("emergencyStopTimeout"), callback_urls=callbacks, client=client_of(request),
            actor=actor_of(request),
        )
        return echo_callbacks(Response(InstanceOutputSerializer(result.instance).data), callbacks)
