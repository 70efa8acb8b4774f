"""Devices and their history: Socket, PowerPeriod, EnergySample."""
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


# Who a power period was switched by when it was no instance (power_on_by / power_off_by).
MANUAL = "<manual>"  # a hand on the plug
UNKNOWN_ACTOR = "<unknown>"  # found ON while the relay's state was unknown (after a failed command or an outage)
UNHELD = "<unheld>"
FAILSAFE = "<failsafe>"  # the plug's own off-timer, armed by the service, switched it off  # the service, because nobody held the plug (switched ON by hand, or a start that failed half-way)


class PowerState(models.TextChoices):
    ON = "ON"
    OFF = "OFF"
    UNKNOWN = "UNKNOWN"


class AfterPowerLoss(models.TextChoices):
    ON = "on"
    OFF = "off"
    LAST = "last"  # as it was: ON if the outage came during a run
    UNKNOWN = "unknown"


class Socket(models.Model):
    """One physical plug; its row lock serializes every decision about it."""

    name = models.SlugField(max_length=64, unique=True)
    driver = models.CharField(max_length=32, default="tasmota_http")
    address = models.CharField(max_length=255, help_text="Base URL or host of the device.")
    channel = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(32)],
        help_text="Relay number on the device, from 1: a power strip or a multi-switch Shelly is one socket per relay.")
    username = models.CharField(max_length=64, blank=True)
    password = models.CharField(max_length=128, blank=True)
    device_name = models.CharField(max_length=128, blank=True)
    # What the database says the relay must be; reconcile drives the device there.
    desired_power = models.CharField(max_length=8, choices=PowerState.choices, default=PowerState.OFF)
    desired_by = models.CharField(max_length=64, blank=True, help_text="Who the pending power change is for.")
    desired_cause = models.CharField(max_length=16, blank=True)
    observed_power = models.CharField(max_length=8, choices=PowerState.choices, default=PowerState.UNKNOWN)
    is_online = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    is_emergency_stopped = models.BooleanField(default=False)
    emergency_stopped_at = models.DateTimeField(null=True, blank=True)
    emergency_stopped_by = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Monitoring: per-socket sample intervals (seconds; empty = SMARTSOCKET_SAMPLE_INTERVAL_ON/OFF),
    # the next sample due, and the lease of the worker sampling it (no overlapping polls).
    sample_interval_on = models.FloatField(null=True, blank=True)
    sample_interval_off = models.FloatField(null=True, blank=True)
    next_sample_at = models.DateTimeField(null=True, blank=True)
    monitor_claimed_until = models.DateTimeField(null=True, blank=True)
    # Reconcile backoff: failed attempts since the device last got where it must be.
    reconcile_attempts = models.PositiveIntegerField(default=0)
    reconcile_next_at = models.DateTimeField(null=True, blank=True)
    # The on-device failsafe (DESIGN §6.4): whether the service arms the plug's own off-timer,
    # when that timer must end (latest running deadline + SMARTSOCKET_FAILSAFE_MARGIN; None: no
    # timer wanted) and when the timer armed on the device ends (None: not armed).
    failsafe = models.BooleanField(default=True, help_text="Arm the plug's own off-timer (Tasmota PulseTime) for holders with a deadline. Off for plugs that must not have a timer.")
    failsafe_target_at = models.DateTimeField(null=True, blank=True)
    max_on_seconds = models.FloatField(null=True, blank=True, help_text="Ceiling for holders without an emergencyStopTimeout: they end (reason max_on) this long after their start. Empty = none.")
    failsafe_expires_at = models.DateTimeField(null=True, blank=True)
    # The off-timer the plug keeps as a setting that every `Power On` restarts (Tasmota PulseTime), in seconds,
    # as the service last set it; None: not known (never set, a fault, the device changed), so the next ON sets it.
    failsafe_preset_seconds = models.FloatField(null=True, blank=True)
    # What the relay does when the mains come back (Tasmota PowerOnState), as last read.
    after_power_loss = models.CharField(max_length=8, choices=AfterPowerLoss.choices, default=AfterPowerLoss.UNKNOWN)
    after_power_loss_checked_at = models.DateTimeField(null=True, blank=True)
    # The must-be-OFF watch: when the relay of a socket nobody holds is checked next (and its lease).
    watch_next_at = models.DateTimeField(null=True, blank=True)
    # The secret in the URL a device pushes its changes to (Shelly webhooks): /api/push/shelly/<push_secret>.
    push_secret = models.CharField(max_length=64, blank=True, editable=False)
    # The last sample whose interval was shared among the holders (instances.services.energy).
    energy_shared_sample_id = models.BigIntegerField(null=True, blank=True)
    energy_shared_at = models.DateTimeField(null=True, blank=True)
    energy_shared_total_kwh = models.FloatField(null=True, blank=True)
    # The latest stop that did not share its holders' energy (a holder left while others stayed, a stop without a
    # closing reading): while it is after energy_shared_at, the next sharing must look for holders that left.
    energy_unshared_stop_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PowerCause(models.TextChoices):
    """Why the relay changed state."""

    REQUESTED = "requested"  # an instance start or stop asked for it
    TIMEOUT = "timeout"
    EMERGENCY = "emergency"
    MANUAL = "manual"  # switched on the device itself
    DELETED = "deleted"
    RECONCILE = "reconcile"
    UNHELD = "unheld"  # switched OFF again because nobody held it
    FAILSAFE = "failsafe"  # the plug's own off-timer fired before the service acted
    MAX_ON = "max_on"  # a holder without a deadline reached the socket's max_on_seconds


class PowerPeriod(models.Model):
    """One ON…OFF span of a socket (the seed's `powerStatus` entry)."""

    socket = models.ForeignKey(Socket, on_delete=models.PROTECT, related_name="power_periods")
    power_on_at = models.DateTimeField()
    power_on_by = models.CharField(max_length=64, help_text="Instance id, <manual> or <unknown>.")
    power_on_cause = models.CharField(max_length=16, choices=PowerCause.choices)
    power_off_at = models.DateTimeField(null=True, blank=True)
    power_off_by = models.CharField(max_length=64, blank=True, help_text="Instance id, <timeout>, <emergency>, <manual>.")
    power_off_cause = models.CharField(max_length=16, choices=PowerCause.choices, blank=True)

    class Meta:
        ordering = ["-power_on_at"]
        constraints = [
            models.UniqueConstraint(fields=["socket"], condition=Q(power_off_at=None), name="one_open_period_per_socket"),
            models.CheckConstraint(condition=Q(power_off_at=None) | Q(power_off_at__gte=F("power_on_at")), name="period_ends_after_start"),
        ]
        indexes = [models.Index(fields=["socket", "power_on_at"])]

    def __str__(self) -> str:
        return f"{self.socket_id}: {self.power_on_at:%Y-%m-%d %H:%M:%S} → {self.power_off_at or 'now'}"

    @property
    def is_open(self) -> bool:
        return self.power_off_at is None


class EnergySample(models.Model):
    """One energy-meter reading of a socket."""

    socket = models.ForeignKey(Socket, on_delete=models.PROTECT, related_name="samples")
    taken_at = models.DateTimeField()
    is_on = models.BooleanField(null=True)
    power_w = models.FloatField()
    apparent_power_va = models.FloatField(default=0)
    reactive_power_var = models.FloatField(default=0)
    power_factor = models.FloatField(default=0)
    voltage_v = models.FloatField()
    current_a = models.FloatField()
    today_kwh = models.FloatField()
    total_kwh = models.FloatField()

    class Meta:
        ordering = ["-taken_at"]
        indexes = [models.Index(fields=["socket", "taken_at"])]

    def __str__(self) -> str:
        return f"{self.socket_id} @ {self.taken_at:%Y-%m-%d %H:%M:%S}: {self.power_w} W"


class Resolution(models.TextChoices):
    MINUTE = "minute"
    HOUR = "hour"


class EnergyRollup(models.Model):
    """Samples older than the retention, folded into one row per socket and minute (or hour): kept for good."""

    socket = models.ForeignKey(Socket, on_delete=models.PROTECT, related_name="rollups")
    resolution = models.CharField(max_length=8, choices=Resolution.choices)
    bucket_start = models.DateTimeField()
    samples = models.PositiveIntegerField(help_text="Raw samples folded in.")
    min_w = models.FloatField()
    max_w = models.FloatField()
    mean_w = models.FloatField()
    max_current_a = models.FloatField()
    energy_wh = models.FloatField(help_text="The energy counter's increase over the bucket (resets counted from zero).")
    # The bucket's newest sample: where the next bucket's first increase is counted from.
    last_at = models.DateTimeField()
    last_total_kwh = models.FloatField()

    class Meta:
        ordering = ["bucket_start"]
        constraints = [models.UniqueConstraint(fields=["socket", "resolution", "bucket_start"], name="rollup_bucket_unique")]

    def __str__(self) -> str:
        return f"{self.socket_id} {self.resolution} {self.bucket_start:%Y-%m-%d %H:%M}: {self.mean_w:.1f} W"
