"""The Ed25519 key exports are signed with: SMARTSOCKET_SIGNING_KEY (base64 of the 32-byte private key, or a
PKCS#8 PEM), else one generated on first use and kept in the database (SigningKey, id 1)."""
import base64

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .models import SigningKey


def signing_key() -> Ed25519PrivateKey:
    configured = settings.SMARTSOCKET_SIGNING_KEY.strip()
    if configured:
        return _load_private_key(configured)
    row = SigningKey.objects.filter(pk=1).first()
    if row is None:  # first run: several processes may race here; one row wins, all use it
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        SigningKey.objects.bulk_create([SigningKey(pk=1, private_key=pem, public_key=public_key_text(key.public_key()))], ignore_conflicts=True)
        row = SigningKey.objects.get(pk=1)
    return _load_private_key(row.private_key)


def _load_private_key(text: str) -> Ed25519PrivateKey:
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except ValueError as exc:
        raise ImproperlyConfigured(f"SMARTSOCKET_SIGNING_KEY: not an Ed25519 private key (base64 of 32 bytes, or PKCS#8 PEM): {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("SMARTSOCKET_SIGNING_KEY: the PEM holds a key of another type; Ed25519 is needed")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64."""
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as exc:
        raise ValueError(f"not an Ed25519 public key (base64 of 32 bytes): {exc}") from None


def sign(key: Ed25519PrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode())).decode()


def signature_valid(key: Ed25519PublicKey, message: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode())
    except (InvalidSignature, ValueError):
        return False
    return True
