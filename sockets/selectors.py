"""Reads of sockets and their history."""
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet

from .drivers import DRIVERS
from .exceptions import SocketNotFound
from .models import EnergySample, PowerPeriod, Socket


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
