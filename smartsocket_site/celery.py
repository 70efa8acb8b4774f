"""The Celery app: configuration from Django settings (CELERY_*), tasks from every app's tasks.py."""
import os
import uuid

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import filesystem

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smartsocket_site.settings")


class EmbeddedTransport(filesystem.Transport):
    """kombu's filesystem broker with atomic writes, so a reader never sees a half-written message.

    The stock transport creates the message file and then writes it; a worker listing the
    folder in between would read an empty message and stop consuming. Here the message is
    written under a temporary name and renamed into the queue folder in one step.
    """

    polling_interval = 0.1  # the deadline promise (1 s) leaves little room for polling

    class Channel(filesystem.Channel):
        def _put(self, queue, payload, **kwargs):
            name = f"{int(filesystem.monotonic() * 1000):015d}_{uuid.uuid4()}.{queue}.msg"  # sorts oldest first
            staging = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.tmp")  # never matches `.<queue>.msg`
            with open(staging, "wb") as file:
                file.write(filesystem.str_to_bytes(filesystem.dumps(payload)))
            os.replace(staging, os.path.join(self.data_folder_out, name))


# `embedded://` names it in CELERY_BROKER_URL; resolved whenever a connection is made.
TRANSPORT_ALIASES["embedded"] = "smartsocket_site.celery:EmbeddedTransport"

app = Celery("smartsocket_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
