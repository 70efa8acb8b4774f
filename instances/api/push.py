"""The endpoint devices push to (Shelly webhooks): `GET|POST /api/push/shelly/<secret>?output=on|off`.

No token: a device cannot send one. The per-socket secret in the URL is the credential; an unknown or
wrong one answers 404 and records nothing. The call is a hint: the relay is re-read under the socket
lock before anything is decided, so a webhook of the service's own command, a repeated or a late one
records nothing twice (DESIGN §7).
"""
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sockets.selectors import socket_get_by_push_secret

from ..services.push import socket_follow_push


PUSH_SCHEMA = extend_schema(
    parameters=[OpenApiParameter("output", str, enum=["on", "off"], description="What the webhook says (a hint: the relay is re-read).")],
    responses=inline_serializer("PushAnswer", {"socket": serializers.CharField(), "change": serializers.CharField(allow_null=True)}),
    request=None,
    auth=[],
)


class ShellyPushView(APIView):
    """For devices, not API clients (README "Devices"): no token, the secret in the URL is the credential."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @PUSH_SCHEMA
    def get(self, request: Request, secret: str) -> Response:
        socket = socket_get_by_push_secret(secret=secret, driver="shelly_rpc")
        went_off = request.query_params.get("output") == "off"  # the switch.off hook (the URL the service installed)
        change = socket_follow_push(socket_id=socket.pk, on=None, at=timezone.now(), went_off=went_off)
        return Response({"socket": socket.name, "change": change})

    @PUSH_SCHEMA
    def post(self, request: Request, secret: str) -> Response:
        return self.get(request, secret)
