"""Callback delivery, in-process, to a real local HTTP receiver: due time, retries, give-up, claims."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from instances.models import Callback, CallbackKind, Instance, StopReason
from instances.tasks import deliver_callback, deliver_callbacks


def wait(api, receiver, duration=0, path="/callback") -> Callback:
    response = api.get("/api/wait", {"duration": duration}, HTTP_CPEE_CALLBACK=receiver.url(path))
    assert response.status_code == 200 and response["CPEE-CALLBACK"] == "true"
    return Callback.objects.get(url=receiver.url(path))


def retry_now(callback: Callback) -> None:
    Callback.objects.filter(pk=callback.pk).update(next_attempt_at=timezone.now())


@pytest.mark.django_db
def test_a_wait_callback_is_put_once_due(api, receiver):
    callback = wait(api, receiver, duration=60)
    assert deliver_callbacks() == 0 and deliver_callback(callback.pk) is False, "not due yet"
    assert not receiver.calls
    Callback.objects.filter(pk=callback.pk).update(due_at=timezone.now(), next_attempt_at=timezone.now())
    assert deliver_callbacks() == 1
    assert deliver_callback(callback.pk) is True
    assert [(path, body) for _at, path, body in receiver.calls] == [("/callback", {"waiting": False})]
    callback.refresh_from_db()
    assert callback.delivered_at is not None and callback.attempts == 1 and callback.last_error == ""
    assert deliver_callback(callback.pk) is False and len(receiver.calls) == 1, "delivered once"


@pytest.mark.django_db
def test_errors_are_retried_with_exponential_backoff(api, receiver, settings):
    receiver.statuses = [500, 503]
    callback = wait(api, receiver)
    assert deliver_callback(callback.pk) is False
    callback.refresh_from_db()
    assert callback.last_error == "HTTP 500" and callback.delivered_at is None and callback.failed_at is None
    assert timedelta(seconds=1.5) < callback.next_attempt_at - timezone.now() <= timedelta(seconds=2)
    assert deliver_callback(callback.pk) is False, "backing off"
    retry_now(callback)
    deliver_callback(callback.pk)
    callback.refresh_from_db()
    assert callback.attempts == 2 and timedelta(seconds=3.5) < callback.next_attempt_at - timezone.now() <= timedelta(seconds=4)
    retry_now(callback)
    assert deliver_callback(callback.pk) is True
    assert len(receiver.calls) == 3 and Callback.objects.get(pk=callback.pk).attempts == 3


@pytest.mark.django_db
def test_it_gives_up_after_the_last_attempt_and_records_why(api, receiver, settings):
    settings.SMARTSOCKET_CALLBACK_MAX_ATTEMPTS = 2
    receiver.statuses = [500, 404, 200]
    callback = wait(api, receiver)
    deliver_callback(callback.pk)
    retry_now(callback)
    deliver_callback(callback.pk)
    callback.refresh_from_db()
    assert callback.failed_at is not None and callback.last_error == "HTTP 404" and callback.attempts == 2
    retry_now(callback)
    assert deliver_callback(callback.pk) is False and deliver_callbacks() == 0 and len(receiver.calls) == 2


@pytest.mark.django_db
def test_redirects_are_not_followed_and_unreachable_receivers_are_retried(api, receiver):
    receiver.statuses = [302]
    callback = wait(api, receiver)
    deliver_callback(callback.pk)
    callback.refresh_from_db()
    assert [path for _at, path, _body in receiver.calls] == ["/callback"], "the Location was not visited"
    assert "redirect" in callback.last_error and callback.failed_at is None

    dead = Callback.objects.create(kind=CallbackKind.WAIT, url="http://127.0.0.1:9/nothing", due_at=timezone.now(), payload={"waiting": False})
    deliver_callback(dead.pk)
    dead.refresh_from_db()
    assert "ConnectionError" in dead.last_error and dead.failed_at is None and dead.next_attempt_at > timezone.now()


@pytest.mark.django_db
def test_only_allowed_http_urls_are_called(receiver, settings):
    callback = Callback.objects.create(kind=CallbackKind.WAIT, url="file:///etc/passwd", due_at=timezone.now(), payload={})
    assert deliver_callback(callback.pk) is False
    callback.refresh_from_db()
    assert callback.failed_at is not None and "http" in callback.last_error and callback.attempts == 1

    stored = Callback.objects.create(kind=CallbackKind.WAIT, url=receiver.url(), due_at=timezone.now(), payload={})
    settings.SMARTSOCKET_CALLBACK_ALLOWED_NETWORKS = ["10.0.0.0/8"]  # the allow-list changed after the row was stored
    assert deliver_callback(stored.pk) is False
    stored.refresh_from_db()
    assert stored.failed_at is not None and "allowed" in stored.last_error and not receiver.calls


@pytest.mark.django_db
def test_start_wait_stop_stops_the_instance_then_calls_back(socket, plug, api, receiver):
    response = api.post("/api/start-wait-stop", {"duration": 0}, HTTP_CPEE_CALLBACK=receiver.url())
    instance_id = response.json()["instance"]["id"]
    callback = Callback.objects.get(instance_id=instance_id)
    assert plug.is_on
    assert deliver_callback(callback.pk) is True
    assert not plug.is_on
    (_at, _path, body), = receiver.calls
    assert instance_id in body["message"]
    assert body["instance"]["id"] == instance_id and body["instance"]["stopReason"] == "requested" and body["instance"]["triggeredPowerOff"]
    assert Instance.objects.get(pk=instance_id).stop_reason == StopReason.REQUESTED


@pytest.mark.django_db
def test_start_wait_stop_without_a_callback_url_still_stops_on_time(socket, plug, api):
    instance_id = api.post("/api/start-wait-stop", {"duration": 0}).json()["instance"]["id"]
    callback = Callback.objects.get(instance_id=instance_id)
    assert callback.url == "" and deliver_callbacks() == 1
    assert deliver_callback(callback.pk) is True
    assert not Instance.objects.get(pk=instance_id).is_running and not plug.is_on


@pytest.mark.django_db
def test_a_planned_stop_during_an_outage_is_committed_and_the_callback_sent(socket, plug, api, receiver, fast_device_timeouts):
    instance_id = api.post("/api/start-wait-stop", {"duration": 0}, HTTP_CPEE_CALLBACK=receiver.url()).json()["instance"]["id"]
    plug.set_fault("refuse")
    assert deliver_callback(Callback.objects.get(instance_id=instance_id).pk) is True
    (_at, _path, body), = receiver.calls
    assert not body["instance"]["isRunning"]
    assert plug.is_on, "reconcile (tested elsewhere) finishes the power-off"


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_the_same_callback(api, receiver):
    receiver.delay = 0.3
    callback = wait(api, receiver)
    barrier = threading.Barrier(3)

    def worker():
        barrier.wait()
        try:
            deliver_callback(callback.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(receiver.calls) == 1
    assert Callback.objects.get(pk=callback.pk).attempts == 1
