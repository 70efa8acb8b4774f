"""API tokens: created and revoked through here, so each is recorded in the ledger (by its fingerprint, never its key)."""
import hashlib

from rest_framework.authtoken.models import Token

from .actors import Actor
from .ledger import ledger_atomic, ledger_record
from .models import EventKind


def token_fingerprint(key: str) -> str:
    """What the ledger names a token by: the first 16 hex digits of the SHA-256 of its key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def token_create(*, user, actor: Actor | None = None, reset: bool = False) -> Token:
    """The user's token (created if they have none; `reset`: a new one replaces theirs)."""
    with ledger_atomic():
        if reset:
            for token in Token.objects.filter(user=user):
                token_revoke(token=token, actor=actor)
        token, created = Token.objects.get_or_create(user=user)
        if created:
            ledger_record(kind=EventKind.TOKEN_CREATED, actor=actor, data={"user": user.get_username(), "fingerprint": token_fingerprint(token.key)})
    return token


def token_revoke(*, token: Token, actor: Actor | None = None) -> None:
    with ledger_atomic():
        ledger_record(kind=EventKind.TOKEN_REVOKED, actor=actor, data={"user": token.user.get_username(), "fingerprint": token_fingerprint(token.key)})
        Token.objects.filter(pk=token.pk).delete()
