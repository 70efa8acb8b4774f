"""`manage.py verify_download FILE`: exit 0 for an untouched download, 1 naming the first altered record."""
from django.core.management.base import BaseCommand, CommandError

from audit.exports import export_verify
from audit.signing import public_key_text, signing_key


class Command(BaseCommand):
    help = "Verify a file from /api/download (JSON or CSV): its seals, signatures and the service's public key."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--public-key", help="base64 Ed25519 public key to verify with (default: this service's, /api/events/public-key)")

    def handle(self, *args, file: str, public_key: str | None, **options):
        key = public_key or public_key_text(signing_key().public_key())
        try:
            result = export_verify(file, public_key=key)
        except OSError as exc:
            raise CommandError(f"{file}: {exc}") from None
        except ValueError as exc:
            raise CommandError(f"--public-key: {exc}") from None
        if not result.valid:
            raise CommandError(f"{file}: NOT VALID: {result.reason}")
        self.stdout.write(f"{file}: valid: {result.reason}")
