"""The ledger over HTTP: events (filtered, paginated), the chain's verification, the export signing key."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from smartsocket_site.api import request_params
from sockets.selectors import socket_get

from .ledger import ledger_head, ledger_verify
from .models import Event, EventKind
from .signing import public_key_text, signing_key


class EventFilterSerializer(serializers.Serializer):
    socket = serializers.SlugField(required=False, max_length=64, help_text="Socket name.")
    kind = serializers.ChoiceField(required=False, choices=EventKind.choices)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    offset = serializers.IntegerField(required=False, min_value=0)

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["before since"]})
        return attrs


class EventSerializer(serializers.ModelSerializer):
    socket = serializers.SlugRelatedField(slug_field="name", read_only=True)
    instance = serializers.CharField(source="instance_id", allow_null=True)
    contentHash = serializers.CharField(source="content_hash")
    previousHash = serializers.CharField(source="previous_hash")

    class Meta:
        model = Event
        fields = ["id", "seq", "at", "kind", "socket", "instance", "reason", "actor", "client", "data", "contentHash", "previousHash", "hash"]
        read_only_fields = fields


class EventPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class EventViewSet(viewsets.GenericViewSet):
    """The audit ledger, newest first."""

    serializer_class = EventSerializer
    pagination_class = EventPagination

    @extend_schema(parameters=[EventFilterSerializer], responses=EventSerializer(many=True))
    def list(self, request: Request) -> Response:
        serializer = EventFilterSerializer(data=request_params(request))
        serializer.is_valid(raise_exception=True)
        args = serializer.validated_data
        events = Event.objects.select_related("socket").order_by("-seq")
        if "socket" in args:
            events = events.filter(socket=socket_get(name=args["socket"]))
        if "kind" in args:
            events = events.filter(kind=args["kind"])
        if "since" in args:
            events = events.filter(at__gte=args["since"])
        if "until" in args:
            events = events.filter(at__lte=args["until"])
        page = self.paginate_queryset(events)
        return self.get_paginated_response(EventSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: {"type": "object", "properties": {
        "valid": {"type": "boolean"}, "events": {"type": "integer"}, "firstInvalidEvent": {"type": "integer", "nullable": True},
        "reason": {"type": "string"}, "head": {"type": "object"}}}})
    def verify(self, request: Request) -> Response:
        result = ledger_verify()
        head = ledger_head()
        return Response({"valid": result.valid, "events": result.events, "firstInvalidEvent": result.first_invalid_event,
                         "reason": result.reason, "head": {"seq": head.seq, "hash": head.hash}})

    @extend_schema(request=None, responses={200: {"type": "object", "properties": {"algorithm": {"type": "string"}, "publicKey": {"type": "string"}}}})
    def public_key(self, request: Request) -> Response:
        return Response({"algorithm": "Ed25519", "publicKey": public_key_text(signing_key().public_key()), "encoding": "base64 of the raw 32-byte key"})
