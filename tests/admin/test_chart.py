"""The power chart on a socket's admin page: readings, shaded power periods, instance starts and stops."""
import re

import pytest

from instances import charts

from .history import at, make_history

pytestmark = pytest.mark.django_db


def chart_of(client, socket, **params) -> str:
    response = client.get(f"/admin/sockets/socket/{socket.pk}/change/", params)
    assert response.status_code == 200
    page = response.content.decode()
    return re.search(r'<svg class="power-chart".*?</svg>', page, re.S).group(0)


def test_it_shades_power_periods_and_marks_instances_over_the_chosen_range(admin_client):
    history = make_history()

    svg = chart_of(admin_client, history.socket, since="2026-11-17T08:50", until="2026-11-17T12:30")

    periods = re.findall(r'<rect class="period" x="([\d.]+)"[^>]*width="([\d.]+)"[^>]*><title>(.*?)</title>', svg)
    assert [title for *_, title in periods] == [
        "ON 2026-11-17 09:00:00 by alpha (requested) → OFF 2026-11-17 09:30:00 by beta (requested)",
        "ON 2026-11-17 10:00:00 by gamma (requested) → OFF 2026-11-17 10:05:00 by &lt;emergency&gt; (emergency)",
        "ON 2026-11-17 11:00:00 by &lt;manual&gt; (manual) → OFF 2026-11-17 11:10:00 by &lt;manual&gt; (manual)",
        "ON 2026-11-17 12:00:00 by delta (requested) → still ON",
    ]
    # 220 minutes across the plot: the first period starts 10 minutes in and lasts 30.
    plot = charts.WIDTH - charts.LEFT - charts.RIGHT
    assert float(periods[0][0]) == pytest.approx(charts.LEFT + plot * 10 / 220, abs=1)
    assert float(periods[0][1]) == pytest.approx(plot * 30 / 220, abs=1)
    starts = re.findall(r'<g class="start"><title>(.*?)</title>', svg)
    stops = re.findall(r'<g class="stop"><title>(.*?)</title>', svg)
    assert starts == [f"{pk} (label-{pk}) started 2026-11-17 {t}:00" for pk, t in
                      (("alpha", "09:00"), ("beta", "09:10"), ("gamma", "10:00"), ("delta", "12:00"))]
    assert stops == [
        "alpha (label-alpha) stopped 2026-11-17 09:20:00: requested, 28.75 Wh",
        "beta (label-beta) stopped 2026-11-17 09:30:00: requested, 28.75 Wh",
        "gamma (label-gamma) stopped 2026-11-17 10:05:00: emergency, 9.583 Wh",
    ]
    assert re.search(r'<polyline class="power" points="[\d., ]+"', svg)
    assert ">100<" in svg and ">200<" in svg  # the watt axis fits the 115 W readings


def test_a_narrow_range_shows_only_what_happened_in_it(admin_client):
    history = make_history()

    svg = chart_of(admin_client, history.socket, since="2026-11-17T10:30", until="2026-11-17T11:30")

    assert len(re.findall(r'<rect class="period"', svg)) == 1  # the manual switch
    assert "<g class=\"start\">" not in svg and "<g class=\"stop\">" not in svg


def test_by_default_it_shows_the_day_up_to_the_latest_reading(admin_client):
    history = make_history()

    svg = chart_of(admin_client, history.socket)

    assert len(re.findall(r'<rect class="period"', svg)) == 4


def test_a_bad_range_falls_back_to_the_default_with_a_warning(admin_client):
    history = make_history()

    response = admin_client.get(f"/admin/sockets/socket/{history.socket.pk}/change/", {"since": "yesterday", "until": "2026-11-17T12:30"})

    assert response.status_code == 200
    assert "Chart range: give both times" in response.content.decode()


def test_an_idle_socket_says_there_is_nothing_to_draw(admin_client, socket):
    svg = chart_of(admin_client, socket)

    assert "No readings or power periods in this range." in svg


def test_the_socket_list_links_to_each_history(admin_client):
    history = make_history()

    page = admin_client.get("/admin/sockets/socket/").content.decode()

    assert f"/admin/sockets/powerperiod/?socket__id__exact={history.socket.pk}" in page
    assert f"/admin/sockets/socket/{history.socket.pk}/change/#power-chart" in page


def page_of(client, socket, **params) -> str:
    response = client.get(f"/admin/sockets/socket/{socket.pk}/change/", params)
    assert response.status_code == 200
    return response.content.decode()


def form_range(page: str) -> tuple[str, str]:
    return tuple(re.search(rf'name="{name}" value="([^"]+)"', page).group(1) for name in ("since", "until"))


def test_by_default_it_spans_the_readings_it_has(admin_client):
    from sockets.models import EnergySample

    history = make_history()
    first, last = (EnergySample.objects.filter(socket=history.socket).order_by(order).first().taken_at for order in ("taken_at", "-taken_at"))
    since, until = form_range(page_of(admin_client, history.socket))
    assert since <= first.strftime("%Y-%m-%dT%H:%M:%S") and until >= last.strftime("%Y-%m-%dT%H:%M:%S")
    assert until <= (last + (last - first) / 20).strftime("%Y-%m-%dT%H:%M:%S"), "fits the data, not a 24 h sliver"


@pytest.mark.parametrize(("preset", "hours"), [("1h", 1), ("6h", 6), ("24h", 24), ("7d", 168)])
def test_presets_show_the_last_hours_up_to_now(admin_client, preset, hours):
    from datetime import datetime, timedelta

    history = make_history()
    page = page_of(admin_client, history.socket, span=preset)
    since, until = (datetime.fromisoformat(value) for value in form_range(page))
    assert abs((until - since) - timedelta(hours=hours)) < timedelta(seconds=2)
    assert f'href="?span={preset}#power-chart"' in page


def test_labels_energy_and_the_ranges_kwh_are_readable_without_hovering(admin_client):
    from sockets.models import EnergySample

    history = make_history()
    page = page_of(admin_client, history.socket, since="2026-11-17T08:50", until="2026-11-17T12:30")
    table = re.search(r'<table class="chart-runs".*?</table>', page, re.S).group(0)
    for label, wh in (("label-alpha", "28.75"), ("label-beta", "28.75"), ("label-gamma", "9.583")):
        assert re.search(rf"<td[^>]*>{label}</td>.*?<td>{wh}</td>", table, re.S), label
    totals = list(EnergySample.objects.filter(socket=history.socket, taken_at__range=(at(-10), at(220)))
                  .order_by("taken_at").values_list("total_kwh", flat=True))
    kwh = re.search(r'<strong class="energy">([\d.]+) kWh</strong>', page).group(1)
    assert float(kwh) == pytest.approx(totals[-1] - totals[0], abs=0.001) and float(kwh) > 0
