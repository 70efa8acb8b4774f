"""History cannot be added, changed or deleted through the admin, not even by a superuser."""
import pytest
from django.contrib.admin.utils import quote

from instances.models import Callback, Instance
from sockets.models import EnergySample, PowerPeriod

from .history import at, make_history

pytestmark = pytest.mark.django_db


def history_rows(history) -> dict[str, object]:
    return {
        "sockets/powerperiod": history.periods[0],
        "sockets/energysample": EnergySample.objects.filter(socket=history.socket).first(),
        "instances/instance": history.instances["beta"],  # stopped
        "instances/callback": history.callbacks[0],  # delivered
    }


@pytest.mark.parametrize("model", ["sockets/powerperiod", "sockets/energysample", "instances/instance", "instances/callback"])
def test_history_refuses_edits_and_deletes(admin_client, model):
    history = make_history()
    row = history_rows(history)[model]
    before = {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields}
    base = f"/admin/{model}/{quote(row.pk)}"

    change = admin_client.post(f"{base}/change/", {"power_off_by": "forged", "stop_reason": "timeout", "power_w": "0", "url": "http://x"})
    delete = admin_client.post(f"{base}/delete/", {"post": "yes"})
    add = admin_client.post(f"/admin/{model}/add/", {})
    bulk_delete = admin_client.post(f"/admin/{model}/", {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"})

    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    row.refresh_from_db()
    assert {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields} == before
    assert bulk_delete.status_code in (200, 302) and type(row).objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("model", ["sockets/powerperiod", "sockets/energysample", "instances/instance", "instances/callback"])
def test_history_pages_offer_no_save_add_or_delete(admin_client, model):
    history = make_history()
    row = history_rows(history)[model]

    detail = admin_client.get(f"/admin/{model}/{quote(row.pk)}/change/").content.decode()
    listing = admin_client.get(f"/admin/{model}/").content.decode()

    assert 'name="_save"' not in detail and "deletelink" not in detail
    assert f"/admin/{model}/add/" not in listing
    assert 'value="delete_selected"' not in listing and 'value="export_csv"' in listing


def test_history_counts_stay_the_same_after_every_attempt(admin_client):
    history = make_history()
    counts = [m.objects.count() for m in (PowerPeriod, EnergySample, Instance, Callback)]

    admin_client.post(f"/admin/sockets/powerperiod/{history.periods[1].pk}/delete/", {"post": "yes"})
    admin_client.post("/admin/instances/instance/add/", {"id": "forged", "socket": history.socket.pk, "started_at": at(0)})

    assert [m.objects.count() for m in (PowerPeriod, EnergySample, Instance, Callback)] == counts
