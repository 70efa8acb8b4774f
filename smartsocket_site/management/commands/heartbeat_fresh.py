"""`manage.py heartbeat_fresh worker|safety|beat|listen`: exit 0 while that process kind's heartbeat is fresh (container healthchecks)."""
from django.core.management.base import BaseCommand, CommandError

from smartsocket_site.operations import PROCESS_HEARTBEATS, heartbeat_state


class Command(BaseCommand):
    help = "Exit 0 when the heartbeat of worker, safety, beat or listen is younger than 3 intervals (+2 s), else 1."

    def add_arguments(self, parser):
        parser.add_argument("name", choices=PROCESS_HEARTBEATS)

    def handle(self, *args, name: str, **options):
        check = heartbeat_state(name=name)
        if not check["ok"]:
            raise CommandError(f"{name}: {check.get('error')}")
        self.stdout.write(f"{name}: alive, last heartbeat {check['ageSeconds']} s ago")
