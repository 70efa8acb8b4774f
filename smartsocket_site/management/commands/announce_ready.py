"""`manage.py announce_ready URL`: wait until URL/readyz answers 200, print one "ready: URL" line, then stay.

`make run` runs it beside web, workers and beat (honcho stops everything when one process ends, so it stays).
"""
import signal
import time

import requests
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print 'ready: URL' once URL/readyz answers 200 (checked every 0.5 s), then wait for a signal."

    def add_arguments(self, parser):
        parser.add_argument("url")
        parser.add_argument("--once", action="store_true", help="exit after announcing (for scripts and tests)")

    def handle(self, *args, url: str, once: bool, **options):
        waited, last = time.monotonic(), ""
        while True:
            try:
                response = requests.get(url.rstrip("/") + "/readyz", timeout=2)
                if response.status_code == 200:
                    break
                last = ", ".join(response.json().get("failing", [])) or f"HTTP {response.status_code}"
            except (requests.RequestException, ValueError) as exc:
                last = type(exc).__name__
            if time.monotonic() - waited > 10:  # progress while a part is slow to start
                self.stdout.write(f"waiting for: {last}")
                waited = time.monotonic()
            time.sleep(0.5)
        self.stdout.write(f"ready: {url}", ending="\n")
        self.stdout.flush()
        if not once:
            signal.pause()
