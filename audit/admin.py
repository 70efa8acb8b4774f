"""The ledger in the admin: read-only for everyone (filters, search, CSV), with the last verification's verdict;
API tokens created and revoked through the services, so both are recorded."""
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html
from rest_framework.authtoken import admin as token_admin  # registers TokenProxy first, so it can be replaced here
from rest_framework.authtoken.models import Token, TokenProxy

from instances.models import Instance
from sockets.admin import ReadOnlyAdmin, admin_link, admin_url

from .actors import actor_of
from .models import Event, LedgerCheck
from .tokens import token_create, token_revoke


class ViaFilter(admin.SimpleListFilter):
    title, parameter_name = "came in by", "via"

    def lookups(self, request, model_admin):
        return [("token", "token"), ("session", "session"), ("trusted-network", "trusted network"), ("command", "command"), ("service", "the service itself")]

    def queryset(self, request, queryset):
        if self.value() == "service":
            return queryset.filter(actor__isnull=True)
        return queryset.filter(actor__via=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """Every decision and observation, in chain order. Nobody can change or delete an event, here or anywhere:
    `manage.py audit_verify` finds a row touched behind the service's back."""

    list_display = ("seq", "at", "kind", "socket_link", "instance_link", "reason", "who", "label")
    list_filter = ("kind", "socket", ViaFilter, "reason")
    list_select_related = ("socket", "instance")
    date_hierarchy = "at"
    search_fields = ("instance__id", "reason", "actor__user", "actor__ip", "client__label", "client__instanceUrl")
    search_help_text = "Instance id, reason, user, IP address, CPEE label or instance URL."
    csv_fields = ("seq", "at", "kind", "socket__name", "instance_id", "reason", "actor", "client", "data", "content_hash", "previous_hash", "hash")
    fields = ("seq", "at", "kind", "socket_link", "instance_link", "reason", "who", "actor", "client", "data", "content_hash", "previous_hash", "hash")
    readonly_fields = ("socket_link", "instance_link", "who", "label")

    def changelist_view(self, request, extra_context=None):
        check = LedgerCheck.objects.filter(pk=1).first()
        if check is not None and check.broken_event is not None:
            self.message_user(request, f"The ledger is BROKEN: {check.broken_reason} (found {timezone.localtime(check.checked_at):%Y-%m-%d %H:%M:%S}).", messages.ERROR)
        elif check is not None and check.checked_at is not None:
            self.message_user(request, f"Ledger intact up to event #{check.seq} (verified {timezone.localtime(check.checked_at):%Y-%m-%d %H:%M:%S}).", messages.SUCCESS)
        return super().changelist_view(request, extra_context)

    @admin.display(description="socket", ordering="socket__name")
    def socket_link(self, event: Event) -> str:
        return admin_link(event.socket)

    @admin.display(description="instance", ordering="instance_id")
    def instance_link(self, event: Event) -> str:
        return format_html('<a href="{}">{}</a>', admin_url(Instance, event.instance_id), event.instance_id) if event.instance_id else "-"

    @admin.display(description="who")
    def who(self, event: Event) -> str:
        return event.actor_text

    @admin.display(description="CPEE label")
    def label(self, event: Event) -> str:
        return event.client.get("label", "") or "-"


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class TokenAdmin(token_admin.TokenAdmin):
    """DRF's token admin; adding and deleting go through the services, so the ledger records both."""

    def save_model(self, request, obj, form, change) -> None:
        obj.key = token_create(user=obj.user, actor=actor_of(request)).key

    def delete_model(self, request, obj) -> None:
        token_revoke(token=Token.objects.get(key=obj.key), actor=actor_of(request))

    def delete_queryset(self, request, queryset) -> None:  # the "delete selected" action
        for token in Token.objects.filter(key__in=[obj.key for obj in queryset]).select_related("user"):
            token_revoke(token=token, actor=actor_of(request))
