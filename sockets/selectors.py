"""Reads of sockets and their history."""
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from .drivers import DRIVERS
from .exceptions import SocketNotFound
from .models import EnergyRollup, EnergySample, PowerPeriod, Resolution, Socket


def socket_get(*, name: str | None = None) -> Socket:
    """The socket called `name`, or the default socket when `name` is empty."""
    name = name or settings.SMARTSOCKET_DEFAULT_SOCKET_NAME
    try:
        return Socket.objects.get(name=name)
    except Socket.DoesNotExist:
        raise SocketNotFound(f"no socket named {name!r}", socket=name) from None


def socket_failsafe_state(*, socket: Socket) -> dict:
    """The on-device failsafe as the API and admin show it: `{supported, armed, expiresAt}` (+ why not supported)."""
    has_timer = getattr(DRIVERS.get(socket.driver), "failsafe_max_seconds", 0) > 0
    reason = "" if settings.SMARTSOCKET_FAILSAFE else "SMARTSOCKET_FAILSAFE=False"
    reason = reason or ("" if socket.failsafe else "turned off for this socket")
    return {"supported": has_timer and not reason, "armed": socket.failsafe_expires_at is not None,
            "expiresAt": socket.failsafe_expires_at, "reason": reason}


def socket_get_by_push_secret(*, secret: str, driver: str) -> Socket:
    """The socket whose device pushes to the URL with `secret` (a webhook); SocketNotFound for anything else, naming nothing."""
    socket = Socket.objects.filter(push_secret=secret, driver=driver).exclude(push_secret="").first() if 16 <= len(secret) <= 64 else None
    if socket is None:
        raise SocketNotFound("no such push endpoint", socket="")
    return socket


def socket_capabilities(*, socket: Socket) -> dict:
    """What the socket's driver declares it can do (failsafe timer, push, per-channel energy, device info); push by
    webhooks (Shelly) only once the service knows its own address (SMARTSOCKET_PUBLIC_URL) to install them."""
    driver = DRIVERS.get(socket.driver)
    if driver is None:
        return {}
    capabilities = driver.capabilities.as_json()
    if hasattr(driver, "install_push") and not settings.SMARTSOCKET_PUBLIC_URL:
        capabilities["push"] = False
    return capabilities


def socket_list() -> QuerySet[Socket]:
    return Socket.objects.order_by("name")


def power_period_list(*, socket: Socket | None = None, since: datetime | None = None, until: datetime | None = None) -> QuerySet[PowerPeriod]:
    """Power periods overlapping [since, until], oldest first."""
    periods = PowerPeriod.objects.select_related("socket").order_by("power_on_at", "pk")
    if socket is not None:
        periods = periods.filter(socket=socket)
    if until is not None:
        periods = periods.filter(power_on_at__lte=until)
    if since is not None:
        periods = periods.exclude(power_off_at__lt=since)
    return periods


def power_period_get_open(*, socket: Socket) -> PowerPeriod | None:
    return PowerPeriod.objects.filter(socket=socket, power_off_at=None).first()


def energy_sample_list(*, socket: Socket | None = None, since: datetime | None = None, until: datetime | None = None) -> QuerySet[EnergySample]:
    """Samples in [since, until], oldest first."""
    samples = EnergySample.objects.order_by("taken_at", "pk")
    if socket is not None:
        samples = samples.filter(socket=socket)
    if since is not None:
        samples = samples.filter(taken_at__gte=since)
    if until is not None:
        samples = samples.filter(taken_at__lte=until)
    return samples


def retention_cutoff(*, now: datetime | None = None) -> datetime:
    """Samples taken before this are rolled up (and no longer kept raw)."""
    return (now or timezone.now()) - timedelta(days=settings.SMARTSOCKET_SAMPLE_RETENTION_DAYS)


def energy_rollup_list(*, socket: Socket, resolution: str = Resolution.MINUTE, since: datetime | None = None,
                       until: datetime | None = None) -> QuerySet[EnergyRollup]:
    """Rollups (samples older than the retention, folded per minute or hour) whose bucket meets [since, until], oldest first."""
    rollups = EnergyRollup.objects.filter(socket=socket, resolution=resolution).order_by("bucket_start")
    if since is not None:
        span = timedelta(minutes=1) if resolution == Resolution.MINUTE else timedelta(hours=1)
        rollups = rollups.filter(bucket_start__gt=since - span)
    if until is not None:
        rollups = rollups.filter(bucket_start__lte=until)
    return rollups


@dataclass(frozen=True)
class MeterPoint:
    """One point of a socket's power history: a raw sample, or a rollup bucket (older than the retention)."""

    at: datetime
    min_w: float
    max_w: float
    mean_w: float
    samples: int
    energy_wh: float  # the counter's increase since the point before (resets counted from zero)


def meter_points(*, socket: Socket, since: datetime, until: datetime, resolution: str = Resolution.MINUTE) -> Iterator[MeterPoint]:
    """The socket's power history over [since, until] in flat memory: the rollups where raw samples are gone,
    then the raw samples; the first raw sample's increase is counted from the last rolled-up reading."""
    last_total = None
    for bucket in energy_rollup_list(socket=socket, resolution=resolution, since=since, until=until).iterator(chunk_size=2000):
        last_total = bucket.last_total_kwh
        yield MeterPoint(at=bucket.bucket_start, min_w=bucket.min_w, max_w=bucket.max_w, mean_w=bucket.mean_w, samples=bucket.samples,
                         energy_wh=bucket.energy_wh)
    readings = energy_sample_list(socket=socket, since=since, until=until).values_list("taken_at", "power_w", "total_kwh")
    for taken_at, watts, total in readings.iterator(chunk_size=5000):
        increase = 0.0 if last_total is None else (total if total < last_total else total - last_total) * 1000
        last_total = total
        yield MeterPoint(at=taken_at, min_w=watts, max_w=watts, mean_w=watts, samples=1, energy_wh=increase)


def meter_span(*, socket: Socket) -> tuple[datetime, datetime] | None:
    """When the socket's first and latest readings were taken, raw or rolled up (None: no reading yet)."""
    samples = EnergySample.objects.filter(socket=socket)
    rollups = EnergyRollup.objects.filter(socket=socket, resolution=Resolution.MINUTE)
    first = [at for at in (rollups.order_by("bucket_start").values_list("bucket_start", flat=True).first(),
                           samples.order_by("taken_at").values_list("taken_at", flat=True).first()) if at]
    latest = [at for at in (rollups.order_by("-bucket_start").values_list("last_at", flat=True).first(),
                            samples.order_by("-taken_at").values_list("taken_at", flat=True).first()) if at]
    return (min(first), max(latest)) if first else None


def energy_sample_latest(*, socket: Socket) -> EnergySample | None:
    return EnergySample.objects.filter(socket=socket).order_by("-taken_at", "-pk").first()


def socket_list_due_for_sample(*, now: datetime) -> QuerySet[Socket]:
    """Sockets whose next sample is due and that no worker is sampling."""
    return Socket.objects.filter(Q(next_sample_at=None) | Q(next_sample_at__lte=now)).filter(
        Q(monitor_claimed_until=None) | Q(monitor_claimed_until__lt=now)
    )


def socket_list_to_reconcile(*, now: datetime) -> QuerySet[Socket]:
    """Sockets not known to be where the database says (relay or power period), whose backoff has run out."""
    open_period = Exists(PowerPeriod.objects.filter(socket=OuterRef("pk"), power_off_at=None))
    unsettled = ~Q(observed_power=F("desired_power")) | Q(open_period=True, desired_power="OFF") | Q(open_period=False, desired_power="ON")
    return Socket.objects.alias(open_period=open_period).filter(unsettled).filter(Q(reconcile_next_at=None) | Q(reconcile_next_at__lte=now))
