"""Honest energy per holder (DESIGN §8): overlapping instances share the plug's measured energy by time,
their shares add up to what the meter counted, and a counter reset is never negative or lost energy."""
import time
from datetime import UTC, datetime, timedelta

import pytest

from instances.models import Instance
from instances.services.energy import holders_share_energy
from instances.tasks import monitor_socket
from sockets.models import EnergySample, Socket
from sockets.services import socket_create

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reading(socket: Socket, seconds: float, total_kwh: float) -> EnergySample:
    return EnergySample.objects.create(socket=socket, taken_at=at(seconds), is_on=True, power_w=0, voltage_v=230, current_a=0,
                                       today_kwh=0, total_kwh=total_kwh)


def holder(socket: Socket, pk: str, start: float, stop: float | None) -> Instance:
    return Instance.objects.create(id=pk, socket=socket, started_at=at(start), stopped_at=at(stop) if stop is not None else None,
                                   energy_consumed_wh=0.0, socket_energy_wh=0.0)


def figures(*pks: str) -> dict[str, tuple[float, float]]:
    return {pk: (round(i.energy_consumed_wh, 6), round(i.socket_energy_wh, 6)) for pk in pks for i in [Instance.objects.get(pk=pk)]}


def test_three_overlapping_holders_share_each_interval_by_time_and_add_up_to_the_meter():
    socket = socket_create(name="bench", address="http://127.0.0.1:9")
    # A 0–60 s, B 20–60 s, C 40–80 s; the meter counts 60 Wh every 20 s (10.8 kW): 240 Wh over 0–80 s.
    holder(socket, "A", 0, 60), holder(socket, "B", 20, 60), holder(socket, "C", 40, 80)
    for seconds, total in ((0, 1.0), (20, 1.06), (40, 1.12), (60, 1.18), (80, 1.24)):
        reading(socket, seconds, total)
    holders_share_energy(socket=Socket.objects.get(pk=socket.pk))

    shares = figures("A", "B", "C")
    # 0–20 A alone: 60 · 20–40 A, B: 30 each · 40–60 A, B, C: 20 each · 60–80 C alone: 60
    assert shares == {"A": (110.0, 180.0), "B": (50.0, 120.0), "C": (80.0, 120.0)}
    assert sum(consumed for consumed, _ in shares.values()) == pytest.approx(240.0), "the shares add up to the meter"


def test_a_holder_starting_mid_interval_gets_its_time_share_of_that_interval():
    socket = socket_create(name="bench", address="http://127.0.0.1:9")
    holder(socket, "A", 0, None), holder(socket, "B", 15, None)
    reading(socket, 0, 2.0), reading(socket, 20, 2.04)  # 40 Wh over 20 s: 30 Wh while A alone, 10 Wh shared
    holders_share_energy(socket=Socket.objects.get(pk=socket.pk))
    assert figures("A", "B") == {"A": (35.0, 40.0), "B": (5.0, 10.0)}


def test_a_counter_reset_mid_run_is_counted_from_zero_not_negative():
    socket = socket_create(name="bench", address="http://127.0.0.1:9")
    holder(socket, "A", 0, None)
    # 10 Wh, then the plug rebooted and its counter restarted (0.002 kWh since), then 10 Wh more.
    for seconds, total in ((0, 5.000), (10, 5.010), (20, 0.002), (30, 0.012)):
        reading(socket, seconds, total)
    holders_share_energy(socket=Socket.objects.get(pk=socket.pk))
    assert figures("A") == {"A": (22.0, 22.0)}


def test_each_interval_is_shared_once_whoever_shares_and_however_often():
    socket = socket_create(name="bench", address="http://127.0.0.1:9")
    holder(socket, "A", 0, None)
    reading(socket, 0, 1.0), reading(socket, 10, 1.01)
    holders_share_energy(socket=Socket.objects.get(pk=socket.pk))
    holders_share_energy(socket=Socket.objects.get(pk=socket.pk))  # nothing new: nothing added
    reading(socket, 20, 1.03)
    holders_share_energy(socket=Socket.objects.get(pk=socket.pk))
    assert figures("A") == {"A": (30.0, 30.0)}


def test_overlapping_instances_on_a_real_plug_share_what_its_meter_counted(api, socket, plug):
    """Three clients over HTTP against the simulator, monitoring sampling in between; the last stop's closing
    reading settles every share at once."""
    plug.load_w = 36000  # 10 Wh per second, visible at Tasmota's 3 decimals of kWh

    def run_then_sample():
        time.sleep(0.6)
        Socket.objects.filter(pk=socket.pk).update(next_sample_at=None)
        monitor_socket(socket.pk)

    first = api.post("/api/instance").json()["instance"]["id"]
    run_then_sample()
    second = api.post("/api/instance").json()["instance"]["id"]
    run_then_sample()
    third = api.post("/api/instance").json()["instance"]["id"]
    run_then_sample()
    api.put(f"/api/instance/{first}")  # not the last holder: no closing reading, the next sample completes its share
    run_then_sample()
    api.put(f"/api/instance/{second}")
    time.sleep(0.6)
    last = api.put(f"/api/instance/{third}").json()["instance"]

    samples = list(EnergySample.objects.filter(socket=socket).order_by("taken_at").values_list("total_kwh", flat=True))
    metered_wh = (samples[-1] - samples[0]) * 1000
    answers = [api.get(f"/api/instance/{pk}").json()["instance"] for pk in (first, second, third)]
    shares = [answer["energyConsumedWh"] for answer in answers]
    assert metered_wh > 20 and all(share > 0 for share in shares)
    assert sum(shares) == pytest.approx(metered_wh, rel=0.05), "overlapping shares add up to the meter, not to 3 × it"
    assert answers[1]["socketEnergyWh"] > answers[1]["energyConsumedWh"], "the plug's whole figure, beside the share"
    assert last["energyConsumedWh"] == shares[2], "the last holder's answer is final: its closing reading was shared"
