"""A small, known audit history written straight to the database (no device involved)."""
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from instances.models import Callback, CallbackKind, Instance, StopReason
from instances.services.energy import holders_share_energy
from sockets.models import EnergySample, PowerCause, PowerPeriod, Socket
from sockets.services import socket_create

TUESDAY = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)


@dataclass
class History:
    socket: Socket
    periods: list[PowerPeriod]
    instances: dict[str, Instance]
    callbacks: list[Callback]


def at(minutes: float) -> datetime:
    return TUESDAY + timedelta(minutes=minutes)


def samples(*, socket: Socket, start: datetime, end: datetime, step_s: float, on: list[tuple[datetime, datetime]], watts: float = 115.0) -> list[EnergySample]:
    """Readings every `step_s` seconds: `watts` while inside an `on` span, 0 W otherwise."""
    rows, total_kwh, t = [], 12.0, start
    while t <= end:
        is_on = any(a <= t <= b for a, b in on)
        power = watts if is_on else 0.0
        total_kwh += power * step_s / 3600 / 1000
        rows.append(EnergySample(
            socket=socket, taken_at=t, is_on=is_on, power_w=power, voltage_v=230.0, current_a=round(power / 230.0, 4),
            today_kwh=total_kwh - 12.0, total_kwh=total_kwh,
        ))
        t += timedelta(seconds=step_s)
    return rows


def make_history(name: str = "mixer") -> History:
    """Last Tuesday on socket `name` (instance ids get a `name-` prefix unless it is "mixer"): two holders share a period (and its energy: 115 W, so alpha and beta
    28.75 Wh each of the 57.5 Wh counted, gamma 9.583 Wh, delta 19.167 Wh so far), an emergency stop, a manual switch, one still running.

    09:00 alpha starts (powers on) · 09:10 beta starts · 09:20 alpha stops · 09:30 beta stops (powers off)
    10:00 gamma starts (powers on) · 10:05 emergency stop · 11:00–11:10 switched by hand · 12:00 delta starts.
    """
    socket = socket_create(name=name, address="http://127.0.0.1:9")
    ids = {pk: pk if name == "mixer" else f"{name}-{pk}" for pk in ("alpha", "beta", "gamma", "delta")}
    p1 = PowerPeriod.objects.create(socket=socket, power_on_at=at(0), power_on_by=ids["alpha"], power_on_cause=PowerCause.REQUESTED,
                                    power_off_at=at(30), power_off_by=ids["beta"], power_off_cause=PowerCause.REQUESTED)
    p2 = PowerPeriod.objects.create(socket=socket, power_on_at=at(60), power_on_by=ids["gamma"], power_on_cause=PowerCause.REQUESTED,
                                    power_off_at=at(65), power_off_by="<emergency>", power_off_cause=PowerCause.EMERGENCY)
    p3 = PowerPeriod.objects.create(socket=socket, power_on_at=at(120), power_on_by="<manual>", power_on_cause=PowerCause.MANUAL,
                                    power_off_at=at(130), power_off_by="<manual>", power_off_cause=PowerCause.MANUAL)
    p4 = PowerPeriod.objects.create(socket=socket, power_on_at=at(180), power_on_by=ids["delta"], power_on_cause=PowerCause.REQUESTED)

    def instance(pk, period, start, stop, reason, **extra):
        return Instance.objects.create(
            id=ids[pk], socket=socket, power_period=period, started_at=at(start), stopped_at=at(stop) if stop is not None else None,
            stop_reason=reason, energy_consumed_wh=0.0, socket_energy_wh=0.0, power_on_at=period.power_on_at, energy_at_start={"total": 12.0},
            client_label=f"label-{ids[pk]}", client_instance_url=f"https://cpee.example/flow/engine/{ids[pk]}", **extra,
        )

    instances = {
        "alpha": instance("alpha", p1, 0, 20, StopReason.REQUESTED, triggered_power_on=True),
        "beta": instance("beta", p1, 10, 30, StopReason.REQUESTED, triggered_power_off=True, power_off_at=at(30)),
        "gamma": instance("gamma", p2, 60, 65, StopReason.EMERGENCY, triggered_power_on=True, power_off_at=at(65)),
        "delta": instance("delta", p4, 180, None, "", triggered_power_on=True),
    }
    on = [(p.power_on_at, p.power_off_at or at(190)) for p in (p1, p2, p3, p4)]
    EnergySample.objects.bulk_create(samples(socket=socket, start=at(-5), end=at(190), step_s=30, on=on))
    holders_share_energy(socket=socket)  # as monitoring does sample by sample
    instances = {key: Instance.objects.get(pk=instance.pk) for key, instance in instances.items()}
    callbacks = [
        Callback.objects.create(kind=CallbackKind.START_WAIT_STOP, url="http://127.0.0.1:9/cb", header_name="CPEE-CALLBACK",
                                instance=instances["alpha"], due_at=at(20), payload={"message": "stopped"}, attempts=1, delivered_at=at(20)),
        Callback.objects.create(kind=CallbackKind.WAIT, url="http://127.0.0.1:9/wait", header_name="CPEE-CALLBACK",
                                due_at=at(200), payload={"waiting": False}),
    ]
    return History(socket=socket, periods=[p1, p2, p3, p4], instances=instances, callbacks=callbacks)
