"""What a device pushes (the MQTT listener, `manage.py listen`), turned into the services monitoring uses.

Every message is a hint acted on under the socket lock against the database, so several listeners
(or one restarted, re-reading on reconnect) never record a change twice: the second finds it done.
"""
import logging
from datetime import datetime, timedelta

from django.db import transaction

from sockets.drivers import EnergyReading
from sockets.selectors import energy_sample_latest
from sockets.services import energy_sample_record, socket_lock, socket_mark_offline, socket_reconcile

from .energy import holders_share_energy
from .manual import RelayChange, socket_follow_relay

logger = logging.getLogger(__name__)
# Telemetry comes every TelePeriod (10 s at least): a reading this close to the last one is the same message, seen by another listener.
SAME_READING = timedelta(seconds=0.5)


def socket_follow_push(*, socket_id: int, on: bool | None, at: datetime, went_off: bool = False) -> str | None:
    """The device published its relay state (`None`: it came back, or pushed only a hint — re-read it; `went_off`: the
    hint says it went OFF, see socket_follow_relay). Returns the RelayChange."""
    change, _ = socket_follow_relay(socket_id=socket_id, pushed=None if on is None else (on, at), went_off=went_off)
    if change == RelayChange.RECONCILE:
        socket_reconcile(socket_id=socket_id, force=True)
    return change


def socket_record_telemetry(*, socket_id: int, reading: EnergyReading, at: datetime) -> bool:
    """A telemetry reading (`tele/<topic>/SENSOR`) stored as a sample and shared among the holders; False if another
    listener stored this one already."""
    with transaction.atomic():
        socket = socket_lock(socket_id=socket_id)
        latest = energy_sample_latest(socket=socket)
        if latest is not None and abs((latest.taken_at - at).total_seconds()) < SAME_READING.total_seconds():
            return False
        energy_sample_record(socket=socket, reading=reading, taken_at=at)
        holders_share_energy(socket=socket)
    return True


def socket_follow_last_will(*, socket_id: int, online: bool, at: datetime) -> None:
    """`tele/<topic>/LWT`: `Offline` (the broker's last will for the device) marks it offline; `Online` re-reads it."""
    if online:
        socket_follow_push(socket_id=socket_id, on=None, at=at)
    else:
        socket_mark_offline(socket_id=socket_id, error="the plug left the MQTT broker (last will: Offline)")
