"""Starting instances on several sockets at once, as separate clients would (each thread its own database connection)."""
import threading

from django.db import connection
from rest_framework.test import APIClient


def start_at_once(names: list[str], **params) -> dict[str, dict]:
    """POST /api/instance for each socket in `names`, all at once; each socket's answer."""
    answers: dict[str, dict] = {}

    def start(name: str) -> None:
        try:
            answers[name] = APIClient().post("/api/instance", {"socket": name, **params}).json()
        finally:
            connection.close()  # the thread's own: none left open when the test database is dropped

    threads = [threading.Thread(target=start, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers
