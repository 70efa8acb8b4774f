"""A pushed change (the MQTT listener) is stamped when it arrived, not when a busy lane got round to it."""
import time

import pytest
from django.utils import timezone

from audit.models import Event, EventKind
from instances.models import Instance, StopReason
from instances.services.push import socket_follow_push
from sockets.models import PowerPeriod

pytestmark = pytest.mark.django_db


def test_a_pushed_off_is_stamped_when_it_arrived(api, socket, plug):
    instance_id = api.post("/api/instance").json()["instance"]["id"]
    time.sleep(0.2)
    plug.press_button()
    arrived = timezone.now()
    time.sleep(0.5)  # the listener's lane was busy
    assert socket_follow_push(socket_id=socket.pk, on=False, at=arrived) == "manual_off"
    instance = Instance.objects.get(pk=instance_id)
    assert instance.stop_reason == StopReason.MANUAL and instance.stopped_at == arrived
    assert PowerPeriod.objects.get().power_off_at == arrived
    assert Event.objects.get(kind=EventKind.MANUAL_OFF).at == arrived and Event.objects.get(kind=EventKind.INSTANCE_STOP).at == arrived


def test_a_pushed_on_while_nobody_holds_it_opens_the_hands_period_when_it_arrived(api, socket, plug):
    api.put(f"/api/instance/{api.post('/api/instance').json()['instance']['id']}")  # seen OFF, settled
    time.sleep(0.2)
    plug.press_button()
    arrived = timezone.now()
    time.sleep(0.5)
    assert socket_follow_push(socket_id=socket.pk, on=True, at=arrived) == "manual_on"
    hand = PowerPeriod.objects.get(power_on_by="<manual>")
    assert hand.power_on_at == arrived and hand.power_off_at > arrived and not plug.is_on
