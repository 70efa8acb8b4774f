"""Read-only socket views: the sockets, their power periods, samples and rollups."""
from django.db.models import Count, Q
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from ..selectors import energy_rollup_list, energy_sample_list, power_period_list, socket_get, socket_list
from .serializers import EnergyRollupSerializer, EnergySampleSerializer, PowerPeriodSerializer, RollupInputSerializer, SocketSerializer


class HistoryPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class SocketViewSet(viewsets.ReadOnlyModelViewSet):
    """The plugs: observed power, emergency lock, last seen, running instances, history."""

    serializer_class = SocketSerializer
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    pagination_class = HistoryPagination

    def get_queryset(self):
        # Counted through the reverse relation: sockets never imports instances.
        return socket_list().annotate(running_instances=Count("instances", filter=Q(instances__stopped_at=None)))

    def get_object(self):
        socket = socket_get(name=self.kwargs["name"])
        return self.get_queryset().get(pk=socket.pk)

    @extend_schema(responses=PowerPeriodSerializer(many=True))
    @action(detail=True, url_path="power-periods")
    def power_periods(self, request: Request, name: str) -> Response:
        page = self.paginate_queryset(power_period_list(socket=socket_get(name=name)).order_by("-power_on_at", "-pk"))
        return self.get_paginated_response(PowerPeriodSerializer(page, many=True).data)

    @extend_schema(responses=EnergySampleSerializer(many=True))
    @action(detail=True)
    def samples(self, request: Request, name: str) -> Response:
        page = self.paginate_queryset(energy_sample_list(socket=socket_get(name=name)).order_by("-taken_at", "-pk"))
        return self.get_paginated_response(EnergySampleSerializer(page, many=True).data)

    @extend_schema(parameters=[RollupInputSerializer], responses=EnergyRollupSerializer(many=True))
    @action(detail=True)
    def rollups(self, request: Request, name: str) -> Response:
        """Samples older than the retention, folded per minute or hour (oldest first)."""
        args = RollupInputSerializer(data=request.query_params)
        args.is_valid(raise_exception=True)
        rollups = energy_rollup_list(socket=socket_get(name=name), **args.validated_data)
        page = self.paginate_queryset(rollups)
        return self.get_paginated_response(EnergyRollupSerializer(page, many=True).data)
