"""The audit ledger: one append-only, hash-chained table of events, its head, and the export signing key."""
from django.db import models
from django.db.models import Q


class EventKind(models.TextChoices):
    INSTANCE_START = "instance.start"
    INSTANCE_STOP = "instance.stop"  # requested, emergency, manual, failsafe, max_on: see `reason`
    INSTANCE_RENEW = "instance.renew"
    INSTANCE_TIMEOUT = "instance.timeout"
    INSTANCE_DELETE = "instance.delete"
    EMERGENCY_STOP = "socket.emergency_stop"
    RECOVER = "socket.recover"
    POWER_ON = "power.on"
    POWER_OFF = "power.off"
    MANUAL_ON = "power.manual_on"  # a hand on the plug
    MANUAL_OFF = "power.manual_off"
    RECONCILE = "reconcile"  # reconcile drove the relay where the database says
    DEVICE_FAULT = "device.fault"
    DEVICE_OFFLINE = "device.offline"
    DEVICE_ONLINE = "device.online"
    SOCKET_CONFIG = "socket.config"  # created or edited (field-level diff, secrets redacted)
    TOKEN_CREATED = "token.created"
    TOKEN_REVOKED = "token.revoked"


class Via(models.TextChoices):
    """How an actor came in."""

    TOKEN = "token"
    SESSION = "session"
    TRUSTED_NETWORK = "trusted-network"
    COMMAND = "command"  # a manage.py command run on the host


class Event(models.Model):
    """One decision or observation. Never updated or deleted: `seq`, `previous_hash` and `hash` chain each
    event to the one before it, so an edit, a deletion or an insertion behind the service's back shows."""

    seq = models.BigIntegerField(unique=True, help_text="Position in the chain, from 1.")
    at = models.DateTimeField()
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    socket = models.ForeignKey("sockets.Socket", on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    instance = models.ForeignKey("instances.Instance", on_delete=models.PROTECT, null=True, blank=True, related_name="events")
    reason = models.CharField(max_length=32, blank=True)
    # Who: {"user", "via", "ip"}; null when the service itself decided (timeout, manual, failsafe, reconcile).
    actor = models.JSONField(null=True, blank=True)
    client = models.JSONField(default=dict, blank=True, help_text="The caller's CPEE headers.")
    data = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["socket", "at"]),
            models.Index(fields=["kind", "at"]),
            models.Index(fields=["at"]),
        ]
        constraints = [models.CheckConstraint(condition=Q(seq__gte=1), name="event_seq_positive")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}"

    @property
    def actor_text(self) -> str:
        """The actor as an auditor reads it: `alice (token, 10.0.0.5)`, `10.0.0.9 (trusted-network)`, `service`."""
        return actor_text(self.actor)


def actor_text(actor: dict | None) -> str:
    """`alice (token, 10.0.0.5)`; a caller without a user by its address: `10.0.0.9 (trusted-network)`; `service` for none."""
    if not actor:
        return "service"
    if actor.get("user"):
        return f"{actor['user']} ({', '.join(part for part in (actor.get('via'), actor.get('ip')) if part)})"
    return f"{actor.get('ip') or 'unknown address'} ({actor.get('via')})"


class LedgerHead(models.Model):
    """The chain's last sealed event (one row, id 1): locked by every writer while it seals, so the chain never forks."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)
    event = models.ForeignKey(Event, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"head #{self.seq}"


class LedgerCheck(models.Model):
    """How far the beat task has verified the chain (one row, id 1), and the first break it found."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)
    # The rolling re-check of what was verified before (an old row edited later): where it resumes.
    scan_seq = models.BigIntegerField(default=0)
    scan_hash = models.CharField(max_length=64, default="0" * 64)
    checked_at = models.DateTimeField(null=True, blank=True)
    broken_event = models.BigIntegerField(null=True, blank=True, help_text="Id of the first invalid event found.")
    broken_reason = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f"verified to #{self.seq}"


class SigningKey(models.Model):
    """The Ed25519 key exports are signed with, generated on first use when SMARTSOCKET_SIGNING_KEY is not set."""

    private_key = models.TextField(help_text="PKCS#8 PEM.")
    public_key = models.TextField(help_text="Raw public key, base64.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.public_key
