"""The power chart on a socket's admin page: readings, shaded power periods, instance starts and stops."""
import re

import pytest

from instances import charts

from .history import make_history

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
        "alpha (label-alpha) stopped 2026-11-17 09:20:00: requested, 38.333 Wh",
        "beta (label-beta) stopped 2026-11-17 09:30:00: requested, 38.333 Wh",
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
