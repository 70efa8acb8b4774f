"""Who made a request: the user (a token's user), how they came in, their TCP peer address, their CPEE headers."""
from dataclasses import dataclass, field

from rest_framework.authtoken.models import Token

from .models import Via

CPEE_HEADERS = {"instanceUrl": "CPEE-INSTANCE-URL", "instanceUuid": "CPEE-INSTANCE-UUID", "activity": "CPEE-ACTIVITY", "label": "CPEE-LABEL"}


@dataclass(frozen=True)
class Actor:
    """A caller. `user` is None for a trusted-network caller without an account: it is named by its address."""

    user: str | None
    via: str
    ip: str | None
    client: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"user": self.user, "via": self.via, "ip": self.ip}


def actor_of(request) -> Actor:
    """The actor of a DRF or plain Django request. The address is REMOTE_ADDR, never a forwarded header."""
    user = getattr(request, "user", None)
    authenticated = user is not None and user.is_authenticated
    if isinstance(getattr(request, "auth", None), Token):
        via = Via.TOKEN
    elif authenticated:
        via = Via.SESSION
    else:
        via = Via.TRUSTED_NETWORK
    client = {key: request.headers.get(header, "")[:500] for key, header in CPEE_HEADERS.items()}
    return Actor(
        user=user.get_username() if authenticated else None,
        via=via,
        ip=request.META.get("REMOTE_ADDR") or None,
        client={key: value for key, value in client.items() if value},
    )


def actor_command(name: str) -> Actor:
    """A manage.py command run on the host (e.g. the default socket taken from the environment)."""
    return Actor(user=None, via=Via.COMMAND, ip=None, client={"command": name})
