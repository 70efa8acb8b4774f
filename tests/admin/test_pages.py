"""Every admin page renders for a superuser with history present, at a bounded query cost."""
import pytest
from django.contrib.admin.utils import quote

from instances.models import Instance
from sockets.models import EnergySample, PowerPeriod

from .history import at, make_history

pytestmark = pytest.mark.django_db

MAX_QUERIES = 14  # session, user, the page's rows, counts, filters — never one per row


def page_urls(history) -> list[str]:
    instance = history.instances["alpha"]
    sample = EnergySample.objects.filter(socket=history.socket).first()
    return [
        "/admin/",
        "/admin/sockets/socket/", f"/admin/sockets/socket/{history.socket.pk}/change/", "/admin/sockets/socket/add/",
        "/admin/sockets/powerperiod/", f"/admin/sockets/powerperiod/{history.periods[0].pk}/change/",
        "/admin/sockets/energysample/", f"/admin/sockets/energysample/{sample.pk}/change/",
        "/admin/instances/instance/", f"/admin/instances/instance/{quote(instance.pk)}/change/",
        "/admin/instances/callback/", f"/admin/instances/callback/{history.callbacks[0].pk}/change/",
    ]


def test_every_page_renders_with_a_bounded_query_count(admin_client, django_assert_max_num_queries):
    history = make_history()

    for url in page_urls(history):
        with django_assert_max_num_queries(MAX_QUERIES):
            response = admin_client.get(url)
        assert response.status_code == 200, url


def test_a_page_of_100_rows_costs_no_query_per_row(admin_client, django_assert_max_num_queries):
    history = make_history()
    period = history.periods[0]
    Instance.objects.bulk_create(
        Instance(id=f"bulk{n:03d}", socket=history.socket, power_period=period, started_at=at(n), stopped_at=at(n + 1),
                 stop_reason="requested", energy_consumed_wh=1.5)
        for n in range(150)
    )
    PowerPeriod.objects.bulk_create(
        PowerPeriod(socket=history.socket, power_on_at=at(-1000 + 2 * n), power_on_by=f"bulk{n:03d}", power_on_cause="requested",
                    power_off_at=at(-999 + 2 * n), power_off_by=f"bulk{n:03d}", power_off_cause="requested")
        for n in range(150)
    )

    for url in ("/admin/instances/instance/", "/admin/sockets/powerperiod/", "/admin/sockets/energysample/"):
        with django_assert_max_num_queries(MAX_QUERIES):
            response = admin_client.get(url)
        assert response.status_code == 200
        assert response.content.count(b'class="action-select"') == 100, url


def test_the_auditor_reads_who_switched_the_socket_last_tuesday_and_why(admin_client):
    history = make_history()
    make_history(name="pump")  # another socket's history must not leak in
    tuesday = {"socket__id__exact": history.socket.pk, "power_on_at__year": 2026, "power_on_at__month": 11, "power_on_at__day": 17}

    periods = admin_client.get("/admin/sockets/powerperiod/", tuesday).content.decode()

    assert periods.count('class="action-select"') == 4
    assert '<a href="/admin/instances/instance/alpha/change/">alpha</a>' in periods  # powered on by alpha, a link
    assert '<a href="/admin/instances/instance/beta/change/">beta</a>' in periods  # powered off by beta
    assert "&lt;emergency&gt;" in periods and "&lt;manual&gt;" in periods
    assert "pump-" not in periods

    started = {"socket__id__exact": history.socket.pk, "started_at__year": 2026, "started_at__month": 11, "started_at__day": 17}
    instances = admin_client.get("/admin/instances/instance/", started).content.decode()

    for pk, wh in (("alpha", "28.75"), ("beta", "28.75"), ("gamma", "9.583")):
        assert f"/admin/instances/instance/{pk}/change/" in instances
        assert f'<td class="field-energy_wh">{wh}</td>' in instances
    assert '<td class="field-stop_reason">Emergency</td>' in instances
    assert "0:20:00" in instances  # alpha's duration


def test_instances_are_found_by_id(admin_client):
    make_history()

    page = admin_client.get("/admin/instances/instance/", {"q": "gamma"}).content.decode()

    assert page.count('class="action-select"') == 1 and "/admin/instances/instance/gamma/change/" in page


def test_an_instance_page_links_its_socket_period_and_samples(admin_client):
    history = make_history()

    page = admin_client.get("/admin/instances/instance/gamma/change/").content.decode()

    assert f"/admin/sockets/socket/{history.socket.pk}/change/" in page
    assert f"/admin/sockets/powerperiod/{history.periods[1].pk}/change/" in page
    assert "0.5 (<a href=" in page and "11 samples</a>" in page  # peak current over 10:00–10:05
    assert "start-wait-stop" not in page  # alpha's callback is not gamma's
    samples_url = page.split("0.5 (<a href=\"")[1].split('"')[0].replace("&amp;", "&")
    samples = admin_client.get(samples_url)
    assert samples.status_code == 200 and samples.content.count(b'class="action-select"') == 11


def test_the_running_filter_shows_only_running_instances(admin_client):
    make_history()

    page = admin_client.get("/admin/instances/instance/", {"state": "running"}).content.decode()

    assert page.count('class="action-select"') == 1 and "/admin/instances/instance/delta/change/" in page


def test_a_power_period_lists_its_holders(admin_client):
    history = make_history()

    page = admin_client.get(f"/admin/sockets/powerperiod/{history.periods[0].pk}/change/").content.decode()

    assert "/admin/instances/instance/alpha/change/" in page and "/admin/instances/instance/beta/change/" in page
    assert "gamma" not in page


def test_the_socket_list_counts_running_instances(admin_client):
    make_history()

    page = admin_client.get("/admin/sockets/socket/").content.decode()

    assert '<td class="field-running">1</td>' in page  # mixer: delta still runs
    assert '<td class="field-running">0</td>' in page  # the default socket


@pytest.mark.parametrize(("query", "expected"), [
    ("state=running", {"delta"}), ("state=stopped", {"alpha", "beta", "gamma"}),
    ("deleted=yes", {"gamma"}), ("deleted=no", {"alpha", "beta", "delta"}),
])
def test_instance_filters_narrow_the_list(admin_client, query, expected):
    history = make_history()
    Instance.objects.filter(pk=history.instances["gamma"].pk).update(deleted_at=at(70))

    content = admin_client.get(f"/admin/instances/instance/?{query}").content.decode()

    shown = {name for name, instance in history.instances.items() if f"label-{instance.pk}" in content}
    assert shown == expected


def test_the_open_period_filter_shows_only_the_period_still_on(admin_client):
    history = make_history()
    open_periods = admin_client.get("/admin/sockets/powerperiod/?open=yes").context["cl"].result_list
    closed = admin_client.get("/admin/sockets/powerperiod/?open=no").context["cl"].result_list
    assert [p.pk for p in open_periods] == [p.pk for p in history.periods if p.power_off_at is None]
    assert len(closed) == len(history.periods) - 1
