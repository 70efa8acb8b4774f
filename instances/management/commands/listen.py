"""`manage.py listen`: the push listener — one long-running process beside web, workers and beat (DESIGN §7).

Follows every Tasmota-over-MQTT socket (its POWER, SENSOR and LWT topics) and hands each message to
the services monitoring uses, under the socket lock: a hand on the plug is recorded within a second,
telemetry becomes samples, a last will marks the plug offline. Picks up sockets added or edited in the
admin every --sync seconds; keeps no state, so several listeners or a restarted one never double-record.
"""
import logging
import queue
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from instances.services.push import socket_follow_last_will, socket_follow_push, socket_record_telemetry
from smartsocket_site.operations import heartbeat_record
from sockets.push import MqttListener, Push

logger = logging.getLogger("instances.listen")


LANES = 8  # messages of one socket in order, in one lane; a slow or dead plug holds up only its lane


def handle_push(push: Push) -> None:
    close_old_connections()  # this lane thread's own connection, checked as Celery does per task
    try:
        _handle(push)
    except Exception:  # one bad message or device must not stop the listener
        logger.exception("listen: %s of socket %s not handled", push.kind, push.socket_id)


def _handle(push: Push) -> None:
    if push.kind == "power":
        socket_follow_push(socket_id=push.socket_id, on=push.value, at=push.at)
    elif push.kind == "reconnect":
        socket_follow_push(socket_id=push.socket_id, on=None, at=push.at)
    elif push.kind == "lwt":
        socket_follow_last_will(socket_id=push.socket_id, online=push.value, at=push.at)
    elif push.kind == "sensor":
        socket_record_telemetry(socket_id=push.socket_id, reading=push.value, at=push.at)


class Command(BaseCommand):
    help = "Follow the plugs that push their changes (Tasmota over MQTT) and record each change when it happens."

    def add_arguments(self, parser):
        parser.add_argument("--sync", type=float, default=2.0, help="Seconds between re-reading which sockets to follow (default 2).")

    def handle(self, *args, sync: float, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        lanes = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"listen-lane-{n}") for n in range(LANES)]
        listener = MqttListener()
        followed = listener.sync()
        self.stdout.write(f"listen: following {followed} MQTT sockets (re-read every {sync:g} s)")
        self.stdout.flush()
        next_sync, next_beat = time.monotonic() + sync, time.monotonic()
        try:
            while not stop.is_set():
                try:
                    push = listener.events.get(timeout=0.2)
                except queue.Empty:
                    push = None
                if push is not None:
                    lanes[push.socket_id % LANES].submit(handle_push, push)
                try:  # a database blip (a restart, a lock) is retried at the next tick, never the listener's end
                    if time.monotonic() >= next_sync:
                        close_old_connections()
                        listener.sync()
                        next_sync = time.monotonic() + sync
                    if time.monotonic() >= next_beat:  # `heartbeat_fresh listen`: the container healthcheck
                        heartbeat_record(name="listen")
                        next_beat = time.monotonic() + settings.SMARTSOCKET_HEARTBEAT_INTERVAL
                except DatabaseError:
                    logger.exception("listen: the database did not answer; retrying")
                    next_sync = next_beat = time.monotonic() + 1
        finally:
            listener.close()
            for lane in lanes:
                lane.shutdown(wait=True, cancel_futures=True)
        self.stdout.write("listen: stopped")
