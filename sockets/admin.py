"""Admin for devices: sockets are configured here; power periods and samples are read-only history.

`instances.admin` extends the Socket and PowerPeriod admins with what needs instances
(emergency stop, links to holders, the power chart): `sockets` never imports `instances`.
"""
import csv
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce, Now
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html

from audit.actors import actor_of

from .drivers import DRIVERS, DeviceError
from .exceptions import SmartSocketError
from .models import EnergySample, PowerPeriod, Socket
from .selectors import socket_capabilities, socket_failsafe_state
from .services import device_error_kind, socket_create, socket_set_off_after_power_loss, socket_test_connection, socket_update


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_response(*, filename: str, header: list[str], rows: Iterable[Iterable]) -> StreamingHttpResponse:
    """A streamed CSV attachment; datetimes as ISO 8601, None as an empty cell."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class CsvExportMixin:
    """The "Export selected rows as CSV" action over `csv_fields` (lookups such as `socket__name` allowed)."""

    csv_fields: tuple[str, ...] = ()

    @admin.action(description="Export selected rows as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet):
        name = queryset.model._meta.model_name
        rows = queryset.values_list(*self.csv_fields).iterator(chunk_size=2000)
        return csv_response(filename=f"{name}s.csv", header=list(self.csv_fields), rows=rows)


class ReadOnlyAdmin(CsvExportMixin, admin.ModelAdmin):
    """History: nobody adds, changes or deletes it here — an audit trail that can be edited is not one."""

    actions = ["export_csv"]
    list_per_page = 100

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        """Every field: the detail page is a display, no form field is even built."""
        return [*self.readonly_fields, *(f.name for f in self.model._meta.fields if f.name not in self.readonly_fields)]


def admin_url(model, pk) -> str:
    """The admin change page of the `model` row with primary key `pk`, without loading it."""
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[quote(pk)])


def admin_link(obj, label=None) -> str:
    """A link to `obj`'s admin change page."""
    if obj is None:
        return "-"
    return format_html('<a href="{}">{}</a>', admin_url(type(obj), obj.pk), label if label is not None else obj)


def changelist_url(model, **filters) -> str:
    """The admin list of `model` with the given filter parameters."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def wh_text(wh: float | None) -> str:
    """Energy as the pages show it: to the mWh (`28.75`), or `-` when unknown."""
    return "-" if wh is None else f"{round(wh, 3):g}"


def duration_text(start: datetime | None, stop: datetime | None) -> str:
    """`1:02:03` (h:mm:ss), or `running` while the span is open."""
    if start is None:
        return "-"
    if stop is None:
        return "running"
    return str(timedelta(seconds=round((stop - start).total_seconds())))


class SocketForm(forms.ModelForm):
    """Socket configuration; the stored password is never sent back to the browser."""

    driver = forms.ChoiceField(choices=[(name, name) for name in DRIVERS])
    password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the stored password.",
    )
    clear_password = forms.BooleanField(required=False, help_text="Remove the stored password.")
    channel = forms.IntegerField(required=False, min_value=1, max_value=32, initial=1,
                                 help_text="Relay number on the device, from 1 (a power strip or a Shelly Pro 4PM is one socket per relay); empty = 1.")
    sample_interval_on = forms.FloatField(
        required=False, min_value=0.5, max_value=86400, help_text="Seconds between samples while ON; empty = SMARTSOCKET_SAMPLE_INTERVAL_ON.",
    )
    max_on_seconds = forms.FloatField(
        required=False, min_value=1, max_value=7 * 86400,
        help_text="Holders without an emergencyStopTimeout end (reason max_on) this many seconds after their start; empty = no ceiling.",
    )
    sample_interval_off = forms.FloatField(
        required=False, min_value=0.5, max_value=86400, help_text="Seconds between samples while OFF; empty = SMARTSOCKET_SAMPLE_INTERVAL_OFF.",
    )

    class Meta:
        model = Socket
        fields = ["name", "driver", "address", "channel", "username", "password", "sample_interval_on", "sample_interval_off", "failsafe",
                  "max_on_seconds"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_password = self.instance.password if self.instance.pk else ""
        self.initial["password"] = ""  # never rendered, and blank means "unchanged"

    def clean(self):
        data = super().clean()
        data["channel"] = data.get("channel") or 1
        same_relay = Socket.objects.filter(address=data.get("address"), channel=data.get("channel")).exclude(pk=self.instance.pk).first()
        if same_relay is not None:  # two sockets on one relay would switch each other's holders off
            raise forms.ValidationError(f"Socket {same_relay.name!r} already drives relay {data.get('channel')} of {data.get('address')}.")
        if data.get("clear_password"):
            data["password"] = ""
        elif not data.get("password"):
            data["password"] = self.stored_password
        return data


class SocketAdmin(CsvExportMixin, admin.ModelAdmin):
    form = SocketForm
    actions = ["test_connection", "set_off_after_power_loss", "export_csv"]
    csv_fields = ("name", "driver", "address", "observed_power", "is_online", "last_seen_at", "is_emergency_stopped",
                  "emergency_stopped_at", "emergency_stopped_by", "last_error")
    list_display = ("name", "driver", "address", "channel", "observed_power", "is_online", "last_seen_at", "is_emergency_stopped", "last_error")
    list_filter = ("observed_power", "is_online", "is_emergency_stopped", "driver")
    search_fields = ("name", "address", "device_name")
    state_fields = (
        "observed_power", "is_online", "last_seen_at", "last_error", "device_name", "desired_power", "desired_by",
        "desired_cause", "is_emergency_stopped", "emergency_stopped_at", "emergency_stopped_by", "created_at",
        "failsafe_state", "after_power_loss", "after_power_loss_checked_at", "capabilities",
    )
    readonly_fields = state_fields
    fieldsets = (
        ("Configuration", {"fields": ("name", "driver", "address", "channel", "username", "password", "clear_password")}),
        ("Monitoring", {"fields": ("sample_interval_on", "sample_interval_off")}),
        ("Failsafe", {"fields": ("failsafe", "max_on_seconds")}),
        ("State (changed by the service only)", {"fields": state_fields}),
    )

    @admin.display(description="failsafe timer")
    def failsafe_state(self, socket: Socket) -> str:
        state = socket_failsafe_state(socket=socket)
        if not state["supported"]:
            return "not armed by the service (" + ("turned off" if state["reason"] else "the driver has no timer") + ")"
        return f"armed, ends {state['expiresAt']:%Y-%m-%d %H:%M:%S} UTC" if state["armed"] else "not armed (OFF, or a holder without deadline)"

    @admin.display(description="driver capabilities")
    def capabilities(self, socket: Socket) -> str:
        names = {"failsafeTimer": "on-device failsafe timer", "push": "push of changes", "perChannelEnergy": "per-channel energy",
                 "deviceInfo": "device info"}
        declared = socket_capabilities(socket=socket)
        has = [names[key] for key, value in declared.items() if value]
        lacks = [names[key] for key, value in declared.items() if not value]
        text = ", ".join(has) or "none"
        if lacks:
            text += f"; not: {', '.join(lacks)}"
        if not declared.get("perChannelEnergy"):
            text += " (energy readings are the whole device's)"
        return text

    @admin.action(description="Test connection: read device info and relay state", permissions=["view"])
    def test_connection(self, request, queryset) -> None:
        for socket in queryset:
            try:
                test = socket_test_connection(socket=socket)
            except DeviceError as exc:
                self.message_user(request, f"{socket}: {device_error_kind(exc)}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{socket}: {test.info.name} (firmware {test.info.firmware}, {test.info.hostname}, MAC {test.info.mac}); "
                                           f"relay {socket.channel} is {'ON' if test.on else 'OFF'} ({test.seconds * 1000:.0f} ms)", messages.SUCCESS)

    @admin.action(description="Make the plug stay OFF after a power loss (PowerOnState 0)", permissions=["change"])
    def set_off_after_power_loss(self, request, queryset) -> None:
        for socket in queryset:
            try:
                socket = socket_set_off_after_power_loss(socket_id=socket.pk)
            except SmartSocketError as exc:
                self.message_user(request, f"{socket}: not changed: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{socket}: after a power loss the plug now comes back {socket.after_power_loss.upper()}", messages.SUCCESS)

    def save_model(self, request, obj: Socket, form: SocketForm, change: bool) -> None:
        """Through the services: a change writes only the configuration, under the socket lock."""
        config = {field: form.cleaned_data[field] for field in SocketForm.Meta.fields}
        if change:
            socket_update(socket_id=obj.pk, actor=actor_of(request), **config)
        else:
            obj.pk = socket_create(actor=actor_of(request), **config).pk


def sample_window(*, socket_ref: str = "socket", start_ref: str, stop_ref: str) -> QuerySet[EnergySample]:
    """Samples of the outer row's socket between two of its times (stop open = now)."""
    return EnergySample.objects.filter(
        socket=OuterRef(socket_ref), taken_at__gte=OuterRef(start_ref), taken_at__lte=Coalesce(OuterRef(stop_ref), Now()),
    )


def with_meter_energy(queryset: QuerySet, *, start_ref: str, stop_ref: str) -> QuerySet:
    """Annotate `meter_wh`: the socket's energy counter difference over the row's span, in one query."""
    window = sample_window(start_ref=start_ref, stop_ref=stop_ref)
    first = Subquery(window.order_by("taken_at", "pk").values("total_kwh")[:1])
    last = Subquery(window.order_by("-taken_at", "-pk").values("total_kwh")[:1])
    return queryset.annotate(meter_wh=(last - first) * 1000)


class IsNullFilter(admin.SimpleListFilter):
    """Two choices on whether `field` is empty: `when_null` and `when_set`, each (value, label)."""

    field = ""
    when_null = ("yes", "empty")
    when_set = ("no", "set")

    def lookups(self, request, model_admin):
        return [self.when_null, self.when_set]

    def queryset(self, request, queryset):
        if self.value() in (self.when_null[0], self.when_set[0]):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == self.when_null[0]})
        return queryset


class OpenPeriodFilter(IsNullFilter):
    title, parameter_name, field = "state", "open", "power_off_at"
    when_null, when_set = ("yes", "ON now (open)"), ("no", "closed")


class PowerPeriodAdmin(ReadOnlyAdmin):
    """Who switched a socket on and off, when and why."""

    list_display = ("power_on_at", "socket", "power_on_by", "power_on_cause", "power_off_at", "power_off_by",
                    "power_off_cause", "duration", "energy_wh")
    list_filter = ("socket", OpenPeriodFilter, "power_on_cause", "power_off_cause")
    list_select_related = ("socket",)
    date_hierarchy = "power_on_at"
    search_fields = ("power_on_by", "power_off_by", "socket__name")
    csv_fields = ("id", "socket__name", "power_on_at", "power_on_by", "power_on_cause", "power_off_at", "power_off_by", "power_off_cause")

    def get_queryset(self, request):
        return with_meter_energy(super().get_queryset(request), start_ref="power_on_at", stop_ref="power_off_at")

    @admin.display(description="duration")
    def duration(self, period: PowerPeriod) -> str:
        return duration_text(period.power_on_at, period.power_off_at)

    @admin.display(description="energy (Wh, meter)", ordering="meter_wh")
    def energy_wh(self, period: PowerPeriod) -> str:
        return "-" if period.meter_wh is None else f"{period.meter_wh:.1f}"


class SampleOnFilter(admin.SimpleListFilter):
    title = "relay"
    parameter_name = "relay"

    def lookups(self, request, model_admin):
        return [("on", "ON"), ("off", "OFF")]

    def queryset(self, request, queryset):
        if self.value() in ("on", "off"):
            return queryset.filter(is_on=self.value() == "on")
        return queryset


@admin.register(EnergySample)
class EnergySampleAdmin(ReadOnlyAdmin):
    list_display = ("taken_at", "socket", "is_on", "power_w", "current_a", "voltage_v", "power_factor", "today_kwh", "total_kwh")
    list_filter = ("socket", SampleOnFilter)
    list_select_related = ("socket",)
    date_hierarchy = "taken_at"
    show_full_result_count = False  # the table grows without bound; skip the second COUNT(*)
    csv_fields = ("socket__name", "taken_at", "is_on", "power_w", "apparent_power_va", "reactive_power_var", "power_factor",
                  "voltage_v", "current_a", "today_kwh", "total_kwh")


admin.site.site_header = "Smart Socket Service"
admin.site.site_title = "Smart Socket Service audit"
admin.site.index_title = "Devices, power history and instances"
admin.site.register(Socket, SocketAdmin)
admin.site.register(PowerPeriod, PowerPeriodAdmin)
