"""Audit admin for instances and callbacks, and the instance-aware parts of the socket admin.

Sockets get the emergency stop / recover actions (the API's services) and the power chart;
power periods link to the instances they powered. History is read-only for everyone.
"""
from django.contrib import admin, messages
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from audit.actors import actor_of
from audit.models import Event, actor_text
from sockets.admin import (
    IsNullFilter,
    PowerPeriodAdmin,
    ReadOnlyAdmin,
    SocketAdmin,
    admin_link,
    admin_url,
    changelist_url,
    duration_text,
    wh_text,
)
from sockets.exceptions import SmartSocketError
from sockets.models import EnergySample, PowerPeriod, Socket
from sockets.selectors import energy_sample_list

from . import reports
from .charts import PRESETS, default_range, power_chart, preset_range
from .models import Callback, Instance
from .services import emergency_stop, recover


def who_link(by: str) -> str:
    """An instance id as a link to that instance; `<manual>`, `<timeout>`, … as they are."""
    if not by or by.startswith("<"):
        return by or "-"
    return format_html('<a href="{}">{}</a>', admin_url(Instance, by), by)


class SocketAuditAdmin(SocketAdmin):
    """Sockets with their holders: running count, emergency stop and recover, the power chart."""

    actions = ["emergency_stop_selected", "recover_selected", "test_connection", "set_off_after_power_loss", "export_csv"]
    list_display = ("name", "observed_power", "running", "is_emergency_stopped", "is_online", "last_seen_at", "driver",
                    "address", "history")
    readonly_fields = (*SocketAdmin.readonly_fields, "history")
    fieldsets = (*SocketAdmin.fieldsets, ("History", {"fields": ("history",)}))
    change_form_template = "admin/instances/socket_change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(running_count=Count("instances", filter=Q(instances__stopped_at=None)))

    @admin.display(description="running instances", ordering="running_count")
    def running(self, socket: Socket) -> int:
        return socket.running_count

    @admin.display(description="history")
    def history(self, socket: Socket) -> str:
        if socket.pk is None:
            return "-"
        links = [
            (changelist_url(PowerPeriod, socket__id__exact=socket.pk), "power periods"),
            (changelist_url(Instance, socket__id__exact=socket.pk), "instances"),
            (changelist_url(EnergySample, socket__id__exact=socket.pk), "samples"),
            (admin_url(Socket, socket.pk) + "#power-chart", "chart"),
            (changelist_url(Event, socket__id__exact=socket.pk), "ledger events"),
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links)

    @admin.action(description="Emergency stop: stop their instances, power off, lock", permissions=["change"])
    def emergency_stop_selected(self, request, queryset) -> None:
        who = f"<admin:{request.user.get_username()}>"[:64]
        for socket in queryset:
            try:
                result = emergency_stop(socket=socket, triggered_by=who, actor=actor_of(request))
            except SmartSocketError as exc:  # committed anyway: instances stopped, lock on, reconcile drives it OFF
                self.message_user(request, f"{socket}: emergency stop recorded and locked, but the device did not confirm OFF: {exc}", messages.ERROR)
            else:
                stopped = ", ".join(result.stopped_instances) or "none"
                self.message_user(request, f"{socket}: emergency-stopped and locked; instances stopped: {stopped}", messages.WARNING)

    @admin.action(description="Recover: lift the emergency lock", permissions=["change"])
    def recover_selected(self, request, queryset) -> None:
        for socket in queryset:
            recover(socket=socket, actor=actor_of(request))
            self.message_user(request, f"{socket}: recovered, instances may start again", messages.SUCCESS)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        socket = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if socket is not None:
            context["chart"] = self._chart(request, socket)
            context["chart_presets"] = list(PRESETS)
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _chart(self, request, socket: Socket):
        """The power chart over `?span=1h|6h|24h|7d` or `?since=&until=` (local time), else the span with readings."""
        since, until = default_range(socket=socket)
        given = [self._parse_time(request.GET.get(key)) for key in ("since", "until")]
        preset = preset_range(socket=socket, preset=request.GET.get("span", ""))
        if preset is not None:
            since, until = preset
        elif given[0] and given[1] and given[0] < given[1]:
            since, until = given
        elif any(request.GET.get(key) for key in ("since", "until")):
            self.message_user(request, "Chart range: give both times, the first before the second; showing the default.", messages.WARNING)
        return power_chart(socket=socket, since=since, until=until)

    @staticmethod
    def _parse_time(value: str | None):
        try:
            parsed = parse_datetime(value or "")
        except ValueError:
            return None
        if parsed is not None and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed)
        return parsed


class ReadOnlyInline(admin.TabularInline):
    """History rows shown under their parent: nothing added, changed or deleted."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class InstanceInline(ReadOnlyInline):
    """The holders of a power period."""

    model = Instance
    fields = ("started_at", "stopped_at", "stop_reason", "energy_consumed_wh", "triggered_power_on", "triggered_power_off", "client_label")
    show_change_link = True


class PowerPeriodAuditAdmin(PowerPeriodAdmin):
    """Power periods with links to the instances that switched them and held them."""

    list_display = ("power_on_at", "socket_link", "on_by", "power_on_cause", "power_off_at", "off_by", "power_off_cause",
                    "duration", "holders", "energy_wh")
    search_fields = (*PowerPeriodAdmin.search_fields, "instances__id")
    inlines = [InstanceInline]
    readonly_fields = ("events",)

    @admin.display(description="ledger events")
    def events(self, period: PowerPeriod) -> str:
        span = {"at__gte": period.power_on_at.isoformat(), **({"at__lte": period.power_off_at.isoformat()} if period.power_off_at else {})}
        return format_html('<a href="{}">events of {} over this period</a>', changelist_url(Event, socket__id__exact=period.socket_id, **span), period.socket)

    def get_queryset(self, request):
        holders = Instance.objects.filter(power_period=OuterRef("pk")).order_by().values("power_period").annotate(n=Count("pk")).values("n")
        return super().get_queryset(request).annotate(holder_count=Coalesce(Subquery(holders), 0))

    @admin.display(description="socket", ordering="socket__name")
    def socket_link(self, period: PowerPeriod) -> str:
        return admin_link(period.socket)

    @admin.display(description="powered on by", ordering="power_on_by")
    def on_by(self, period: PowerPeriod) -> str:
        return who_link(period.power_on_by)

    @admin.display(description="powered off by", ordering="power_off_by")
    def off_by(self, period: PowerPeriod) -> str:
        return who_link(period.power_off_by)

    @admin.display(description="instances", ordering="holder_count")
    def holders(self, period: PowerPeriod) -> str:
        return format_html('<a href="{}">{}</a>', changelist_url(Instance, power_period__id__exact=period.pk), period.holder_count)


class RunningFilter(IsNullFilter):
    title, parameter_name, field = "state", "state", "stopped_at"
    when_null, when_set = ("running", "running"), ("stopped", "stopped")


class DeletedFilter(IsNullFilter):
    title, parameter_name, field = "deleted (hidden from the API)", "deleted", "deleted_at"
    when_null, when_set = ("no", "visible"), ("yes", "deleted")


class CallbackInline(ReadOnlyInline):
    model = Callback
    fields = ("kind", "url", "header_name", "due_at", "attempts", "delivered_at", "failed_at", "last_error")


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    """Every holder ever: when it ran, why it stopped, what it consumed. Search by instance id."""

    list_display = ("id", "socket_link", "started_at", "stopped_at", "duration", "stop_reason", "energy_wh",
                    "switched_on", "switched_off", "period_link", "client_label", "deleted")
    list_filter = ("socket", RunningFilter, "stop_reason", "triggered_power_on", "triggered_power_off", DeletedFilter)
    list_select_related = ("socket", "power_period")
    date_hierarchy = "started_at"
    search_fields = ("id", "client_label", "client_instance_url")
    inlines = [CallbackInline]
    fieldsets = (
        (None, {"fields": ("id", "socket_link", "period_link", "started_at", "stopped_at", "duration", "stop_reason", "deleted_at", "events")}),
        ("Who", {"fields": ("started_by_text", "stopped_by_text")}),
        ("Power", {"fields": ("triggered_power_on", "power_on_at", "triggered_power_off", "power_off_at")}),
        ("Energy", {"fields": ("energy_wh", "socket_energy", "peak_current", "energy_at_start")}),
        ("Deadline", {"fields": ("emergency_stop_timeout_ms", "deadline_at")}),
        ("Client (CPEE headers)", {"fields": ("client_label", "client_instance_url", "client_instance_uuid", "client_activity")}),
    )
    readonly_fields = ("socket_link", "period_link", "duration", "energy_wh", "socket_energy", "peak_current", "events", "started_by_text", "stopped_by_text")

    def get_queryset(self, request):
        return super().get_queryset(request)

    @admin.action(description="Export selected rows as CSV (the download's instances report)")
    def export_csv(self, request, queryset):
        return reports.attachment(reports.instances_csv(instances=queryset), content_type="text/csv", filename="instances.csv")

    @admin.display(description="socket", ordering="socket__name")
    def socket_link(self, instance: Instance) -> str:
        return admin_link(instance.socket)

    @admin.display(description="power period", ordering="power_period__power_on_at")
    def period_link(self, instance: Instance) -> str:
        period = instance.power_period
        return admin_link(period, f"ON {timezone.localtime(period.power_on_at):%Y-%m-%d %H:%M:%S}") if period else "-"

    @admin.display(description="ledger events")
    def events(self, instance: Instance) -> str:
        return format_html('<a href="{}">its events</a>', changelist_url(Event, instance__id__exact=instance.pk))

    @admin.display(description="started by")
    def started_by_text(self, instance: Instance) -> str:
        return actor_text(instance.started_by)

    @admin.display(description="stopped by")
    def stopped_by_text(self, instance: Instance) -> str:
        return "-" if instance.is_running else actor_text(instance.stopped_by)

    @admin.display(description="duration")
    def duration(self, instance: Instance) -> str:
        return duration_text(instance.started_at, instance.stopped_at)

    @admin.display(description="energy, its share (Wh)", ordering="energy_consumed_wh")
    def energy_wh(self, instance: Instance) -> str:
        return wh_text(instance.energy_consumed_wh)

    @admin.display(description="the plug's energy over its run, shared or not (Wh)")
    def socket_energy(self, instance: Instance) -> str:
        return wh_text(instance.socket_energy_wh)

    @admin.display(description="peak current (A)")
    def peak_current(self, instance: Instance) -> str:
        samples = energy_sample_list(socket=instance.socket, since=instance.started_at, until=instance.stopped_at or timezone.now())
        figures = samples.aggregate(peak=Max("current_a"), count=Count("pk"))
        url = changelist_url(EnergySample, socket__id__exact=instance.socket_id, taken_at__gte=instance.started_at.isoformat(),
                             **({"taken_at__lte": instance.stopped_at.isoformat()} if instance.stopped_at else {}))
        peak = "-" if figures["peak"] is None else f"{figures['peak']:g}"
        return format_html('{} (<a href="{}">{} samples</a>)', peak, url, figures["count"])

    @admin.display(description="switched on", boolean=True, ordering="triggered_power_on")
    def switched_on(self, instance: Instance) -> bool:
        return instance.triggered_power_on

    @admin.display(description="switched off", boolean=True, ordering="triggered_power_off")
    def switched_off(self, instance: Instance) -> bool:
        return instance.triggered_power_off

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def deleted(self, instance: Instance) -> bool:
        return instance.deleted_at is not None


class CallbackStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("pending", "pending"), ("delivered", "delivered"), ("failed", "failed")]

    def queryset(self, request, queryset):
        return {
            "pending": lambda: queryset.filter(delivered_at=None, failed_at=None),
            "delivered": lambda: queryset.exclude(delivered_at=None),
            "failed": lambda: queryset.exclude(failed_at=None),
        }.get(self.value(), lambda: queryset)()


@admin.register(Callback)
class CallbackAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "instance_link", "url", "header_name", "due_at", "attempts", "delivered_at", "failed_at", "last_error")
    list_filter = ("kind", CallbackStatusFilter)
    date_hierarchy = "due_at"
    search_fields = ("url", "instance__id")
    csv_fields = ("id", "kind", "instance_id", "url", "header_name", "due_at", "created_at", "attempts", "next_attempt_at",
                  "delivered_at", "failed_at", "last_error")

    @admin.display(description="instance", ordering="instance_id")
    def instance_link(self, callback: Callback) -> str:
        return who_link(callback.instance_id or "")


admin.site.unregister(Socket)
admin.site.register(Socket, SocketAuditAdmin)
admin.site.unregister(PowerPeriod)
admin.site.register(PowerPeriod, PowerPeriodAuditAdmin)
