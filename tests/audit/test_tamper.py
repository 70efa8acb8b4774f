"""Tamper evidence: a row edited, deleted or inserted by SQL behind the service's back is found and named —
by /api/events/verify, `manage.py audit_verify`, and the beat task's check (logs, /readyz, the admin)."""
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.ledger import ledger_check
from audit.models import Event
from audit.tasks import verify_ledger

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(socket, plug, api) -> list[Event]:
    """A short real history: three start/stop cycles."""
    for _ in range(3):
        instance_id = api.post("/api/instance", HTTP_CPEE_LABEL="run").json()["instance"]["id"]
        assert api.put(f"/api/instance/{instance_id}").status_code == 200
    return list(Event.objects.order_by("seq"))


def sql(statement: str, *params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def verdict(api) -> dict:
    response = api.get("/api/events/verify")
    assert response.status_code == 200
    return response.json()


def audit_verify() -> str:
    with pytest.raises(CommandError) as broken:
        call_command("audit_verify", stdout=open("/dev/null", "w"))
    return str(broken.value)


def test_an_untouched_ledger_verifies_everywhere(history, api, capsys):
    assert verdict(api) | {"head": None} == {"valid": True, "events": len(history), "firstInvalidEvent": None, "reason": "", "head": None}
    call_command("audit_verify")
    assert f"ledger intact: {len(history)} events" in capsys.readouterr().out
    assert ledger_check().broken_event is None


def test_an_edited_row_is_found_and_named(history, api, admin_client, caplog):
    victim = history[4]
    sql("UPDATE audit_event SET reason = 'manual' WHERE id = %s", victim.pk)

    result = verdict(api)
    assert (result["valid"], result["firstInvalidEvent"]) == (False, victim.pk) and "content altered" in result["reason"]
    assert f"first invalid event {victim.pk}" in audit_verify()

    verify_ledger()
    assert f"event {victim.pk}" in caplog.text and "BROKEN" in caplog.text, "the beat task logs the break"
    ready = api.get("/readyz").json()["ledger"]
    assert (ready["intact"], ready["firstInvalidEvent"]) == (False, victim.pk)
    page = admin_client.get("/admin/audit/event/").content.decode()
    assert "The ledger is BROKEN" in page and f"event {victim.pk}" in page


def test_a_rewritten_row_with_its_hash_recomputed_still_breaks_the_chain(history, api):
    from audit.ledger import event_content_hash

    victim = Event.objects.get(pk=history[2].pk)
    victim.reason = "manual"
    sql("UPDATE audit_event SET reason = 'manual', content_hash = %s WHERE id = %s", event_content_hash(victim), victim.pk)

    result = verdict(api)
    assert (result["valid"], result["firstInvalidEvent"]) == (False, victim.pk) and "not linked" in result["reason"]


def test_a_deleted_row_is_found(history, api):
    victim = history[3]
    sql("DELETE FROM audit_event WHERE id = %s", victim.pk)

    result = verdict(api)
    assert result["valid"] is False and result["firstInvalidEvent"] == history[4].pk
    assert f"#{victim.seq}" in result["reason"] and "deleted" in result["reason"]
    assert f"first invalid event {history[4].pk}" in audit_verify()


def test_the_newest_row_deleted_is_found_through_the_head(history, api):
    sql("UPDATE audit_ledgerhead SET event_id = %s", history[-2].pk)
    sql("DELETE FROM audit_event WHERE id = %s", history[-1].pk)

    result = verdict(api)
    assert result["valid"] is False and "deleted or rewritten at the end" in result["reason"]


def test_the_tail_deleted_and_the_head_rewound_is_found_by_what_was_verified_before(history, api):
    ledger_check()  # the beat task verified up to the newest event
    kept = history[-3]
    sql("UPDATE audit_ledgerhead SET seq = %s, hash = %s, event_id = %s", kept.seq, kept.hash, kept.pk)
    sql("DELETE FROM audit_event WHERE seq > %s", kept.seq)

    result = verdict(api)
    assert result["valid"] is False and f"#{history[-1].seq} was verified before" in result["reason"]
    assert "events deleted at the end" in audit_verify()
    assert ledger_check().broken_reason


def test_an_inserted_row_is_found(history, api):
    newest = history[-1]
    sql("INSERT INTO audit_event (seq, at, kind, reason, actor, client, data, content_hash, previous_hash, hash, socket_id, instance_id) "
        "SELECT seq + 1, at, 'instance.stop', 'requested', actor, client, data, content_hash, hash, hash, socket_id, instance_id "
        "FROM audit_event WHERE id = %s", newest.pk)
    inserted = Event.objects.latest("seq")

    result = verdict(api)
    assert (result["valid"], result["firstInvalidEvent"]) == (False, inserted.pk) and "not in the chain" in result["reason"]
    assert f"first invalid event {inserted.pk}" in audit_verify()


def test_the_beat_check_is_incremental_and_a_later_edit_of_an_old_row_is_still_found(history, api, socket):
    assert ledger_check().seq == len(history)
    instance_id = api.post("/api/instance").json()["instance"]["id"]
    api.put(f"/api/instance/{instance_id}")
    check = ledger_check()
    assert check.seq == Event.objects.count() and check.broken_event is None, "only the new events are walked"

    sql("UPDATE audit_event SET reason = 'manual' WHERE id = %s", history[1].pk)  # an old, already checked row
    for _ in range(3):  # the rolling re-check reaches it
        check = ledger_check()
    assert check.broken_event == history[1].pk
