"""After a device fault clears, the plug reaches the state the database says by itself (reconcile),
on the production topology: PostgreSQL, Redis broker, gunicorn, Celery worker and beat."""
import time

import pytest
import requests

from instances.models import Instance, StopReason
from sockets.models import PowerPeriod, PowerState, Socket

from .conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
FAULTS = [("timeout", 500), ("http500", 500), ("garbage", 500), ("refuse", 500), ("wrong_state", 409)]


def call(method: str, url: str, **kwargs) -> requests.Response:
    response = requests.request(method, url, timeout=30, allow_redirects=False, **kwargs)
    assert response.headers["Content-Type"] == "application/json", response.text[:300]
    return response


def socket_seen(socket, power: str) -> bool:
    return Socket.objects.filter(pk=socket.pk, observed_power=power, is_online=True).exists()


@pytest.mark.timeout(180)
def test_after_each_fault_clears_the_plug_reaches_the_database_state_by_itself(production_stack, socket, plug):
    stack = production_stack
    for fault, status in FAULTS:
        # during a start: nothing is created, the plug stays OFF and is seen OFF again
        plug.set_fault(fault)
        assert call("POST", f"{stack.api}/instance").status_code == status, fault
        assert not Instance.objects.filter(stopped_at=None).exists() and not plug.is_on
        plug.clear_fault()
        eventually(lambda: socket_seen(socket, PowerState.OFF), 6, f"{fault}: socket seen OFF after a failed start")

        # during the last stop: the instance still runs, so ON is right and stays
        instance_id = call("POST", f"{stack.api}/instance").json()["instance"]["id"]
        plug.set_fault(fault)
        assert call("PUT", f"{stack.api}/instance/{instance_id}").status_code == status, fault
        plug.clear_fault()
        eventually(lambda: socket_seen(socket, PowerState.ON), 6, f"{fault}: socket seen ON after a failed stop")
        assert plug.is_on and Instance.objects.get(pk=instance_id).is_running

        # during an emergency stop: the decision stands, reconcile switches the plug OFF once it answers
        other_id = call("POST", f"{stack.api}/instance").json()["instance"]["id"]
        plug.set_fault(fault)
        assert call("POST", f"{stack.api}/emergency-stop/{other_id}").status_code == status, fault
        assert set(Instance.objects.filter(stop_reason=StopReason.EMERGENCY).values_list("pk", flat=True)) >= {instance_id, other_id}
        time.sleep(1.0)  # reconcile keeps failing meanwhile
        assert plug.is_on, f"{fault}: nothing could reach the plug"
        cleared = time.time()
        plug.clear_fault()
        eventually(lambda: not plug.is_on, 6, f"{fault}: reconcile powered the plug OFF")
        assert [at for at, on, _ in plug.transitions if not on][-1] >= cleared
        eventually(lambda: socket_seen(socket, PowerState.OFF), 6, f"{fault}: socket seen OFF after the emergency stop")
        assert not PowerPeriod.objects.filter(power_off_at=None).exists()
        last = PowerPeriod.objects.order_by("-power_on_at").first()
        assert (last.power_off_by, last.power_off_cause) == ("<emergency>", "emergency"), fault
        assert call("PUT", f"{stack.api}/recover").status_code == 200

    periods = list(PowerPeriod.objects.order_by("power_on_at"))
    assert len(periods) == len(FAULTS) == plug.power_on_commands == plug.power_off_commands
    assert all(a.power_off_at <= b.power_on_at for a, b in zip(periods, periods[1:]))
