"""`manage.py audit_verify`: walk the whole ledger; exit 1 naming the first bad event."""
from django.core.management.base import BaseCommand, CommandError

from audit.ledger import ledger_check_record, ledger_head, ledger_verify


class Command(BaseCommand):
    help = "Verify the audit ledger's hash chain from the first event to the head; exit 1 naming the first bad event."

    def handle(self, *args, **options):
        head = ledger_head()
        self.stdout.write(f"verifying {head.seq} events …")
        result = ledger_verify()
        ledger_check_record(result=result)
        if not result.valid:
            raise CommandError(f"ledger BROKEN after {result.events} events: first invalid event {result.first_invalid_event}: {result.reason}")
        self.stdout.write(f"ledger intact: {result.events} events, head #{result.seq} {result.hash}")
