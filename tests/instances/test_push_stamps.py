"""A pushed change (the MQTT listener) is stamped when it arrived, not when a busy lane got round to it; a push read
soon after the service's own command is re-read (it may be that command's echo)."""
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
    time.sleep(1.2)  # past PUSH_ECHO
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
    time.sleep(1.2)  # past PUSH_ECHO
    plug.press_button()
    arrived = timezone.now()
    time.sleep(0.5)
    assert socket_follow_push(socket_id=socket.pk, on=True, at=arrived) == "manual_on"
    hand = PowerPeriod.objects.get(power_on_by="<manual>")
    assert hand.power_on_at == arrived and hand.power_off_at > arrived and not plug.is_on


def test_a_late_read_echo_of_the_services_own_off_does_not_end_the_next_holder(api, socket, plug):
    """A last stop's `POWER OFF`, read by a busy listener after the next start switched the plug ON again."""
    api.put(f"/api/instance/{api.post('/api/instance').json()['instance']['id']}")
    holder = api.post("/api/instance").json()["instance"]["id"]
    # the OFF's echo sat in the listener's socket buffer: stamped now, after the start saw the plug ON
    assert socket_follow_push(socket_id=socket.pk, on=False, at=timezone.now()) is None, "re-read: the plug is ON"
    assert Instance.objects.get(pk=holder).is_running and plug.is_on
    assert not Event.objects.filter(kind__in=[EventKind.MANUAL_OFF, EventKind.MANUAL_ON]).exists()
