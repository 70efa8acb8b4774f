"""Holders of a socket: Instance, and durable Callback deliveries."""
import secrets

from django.db import models
from django.db.models import Q

from sockets.models import PowerPeriod, Socket


def new_instance_id() -> str:
    """A short, URL-safe, unguessable id (96 random bits)."""
    return secrets.token_urlsafe(12)


class StopReason(models.TextChoices):
    REQUESTED = "requested"
    TIMEOUT = "timeout"
    EMERGENCY = "emergency"
    MANUAL = "manual"
    DELETED = "deleted"
    FAILSAFE = "failsafe"  # the plug's own off-timer fired: the service missed the deadline
    MAX_ON = "max_on"  # a holder without a deadline reached the socket's max_on_seconds


class Instance(models.Model):
    """One holder of a socket: the plug stays ON while at least one instance runs."""

    id = models.CharField(primary_key=True, max_length=32, default=new_instance_id, editable=False)
    socket = models.ForeignKey(Socket, on_delete=models.PROTECT, related_name="instances")
    power_period = models.ForeignKey(PowerPeriod, on_delete=models.PROTECT, null=True, blank=True, related_name="instances")
    emergency_stop_timeout_ms = models.BigIntegerField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=16, choices=StopReason.choices, blank=True)
    power_on_at = models.DateTimeField(null=True, blank=True, help_text="When the socket was powered on for this instance's period.")
    power_off_at = models.DateTimeField(null=True, blank=True, help_text="Set when this instance's stop powered the socket off.")
    triggered_power_on = models.BooleanField(default=False)
    triggered_power_off = models.BooleanField(default=False)
    energy_at_start = models.JSONField(default=dict, blank=True, help_text="The seed's `energy` snapshot read at start.")
    energy_consumed_wh = models.FloatField(null=True, blank=True, help_text="This instance's share of what the meter measured while it ran (Wh).")
    socket_energy_wh = models.FloatField(null=True, blank=True, help_text="What the meter measured over the instance's run, shared or not (Wh).")
    # Who started and stopped it: {"user", "via", "ip"}; stopped_by null when the service decided (timeout, manual, failsafe).
    started_by = models.JSONField(null=True, blank=True)
    stopped_by = models.JSONField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Lease of the worker stopping it on its own (timeout, planned stop): one at a time.
    stop_claimed_until = models.DateTimeField(null=True, blank=True)
    client_instance_url = models.CharField(max_length=500, blank=True)
    client_instance_uuid = models.CharField(max_length=64, blank=True)
    client_activity = models.CharField(max_length=64, blank=True)
    client_label = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["socket", "started_at"]),
            # Who held a socket over a sample interval (energy sharing): running, or stopped after its start.
            models.Index(fields=["socket", "stopped_at"]),
            # What the deadline sweep scans: running instances with a deadline.
            models.Index(fields=["deadline_at"], condition=Q(stopped_at=None), name="running_deadline_idx"),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_running(self) -> bool:
        return self.stopped_at is None

    @property
    def is_emergency_stopped(self) -> bool:
        return self.stop_reason == StopReason.EMERGENCY

    @property
    def is_manually_stopped(self) -> bool:
        return self.stop_reason == StopReason.MANUAL


class CallbackKind(models.TextChoices):
    WAIT = "wait"
    START_WAIT_STOP = "start-wait-stop"


class Callback(models.Model):
    """A pending asynchronous answer: PUT `payload` to `url` once due."""

    kind = models.CharField(max_length=16, choices=CallbackKind.choices)
    url = models.URLField(max_length=1000, blank=True, help_text="Empty for a planned stop with nobody to call back.")
    header_name = models.CharField(max_length=100, blank=True)
    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, null=True, blank=True, related_name="callbacks")
    due_at = models.DateTimeField()
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["due_at"], condition=Q(delivered_at=None, failed_at=None), name="pending_callback_idx")]

    def __str__(self) -> str:
        return f"{self.kind} → {self.url}"

    @property
    def is_pending(self) -> bool:
        return self.delivered_at is None and self.failed_at is None
