"""Roll up the raw samples older than the retention now (what the beat task does a bounded part of every run)."""
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sockets.selectors import retention_cutoff
from sockets.services.retention import samples_roll_up


class Command(BaseCommand):
    help = "Fold samples older than SMARTSOCKET_SAMPLE_RETENTION_DAYS into per-minute and per-hour rollups, then delete them."

    def add_arguments(self, parser):
        parser.add_argument("--older-than-days", type=float, help="Another cutoff than the retention setting (days before now).")

    def handle(self, *args, older_than_days=None, **options):
        if older_than_days is not None and older_than_days <= 0:
            raise CommandError("--older-than-days must be more than 0")
        cutoff = timezone.now() - timedelta(days=older_than_days) if older_than_days is not None else retention_cutoff()
        self.stdout.write(f"rolling up samples taken before {cutoff.isoformat()}")

        def progress(done):
            self.stdout.write(f"  {done.samples} samples in {done.batches} batches, {done.seconds:.1f} s")

        done = samples_roll_up(cutoff=cutoff, progress=progress)
        self.stdout.write(self.style.SUCCESS(f"{done.samples} samples rolled up and deleted in {done.seconds:.1f} s"))
