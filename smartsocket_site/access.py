"""Who may call the API (token or trusted network) and where callbacks may go (SSRF guard)."""
import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from rest_framework.permissions import BasePermission

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
CALLBACK_URL_MAX_LENGTH = 1000  # Callback.url's column width
# RFC 3986 characters only: a backslash, space or control character could make the
# HTTP client read another host than the one checked here.
URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address from its text (brackets and IPv4-mapped IPv6 undone), or None."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_in_networks(text: str, cidrs: list[str]) -> bool:
    """True iff `text` is an IP address inside one of the networks `cidrs`."""
    address = _address(text)
    return address is not None and any(address in network for network in _networks(tuple(cidrs)))


def client_is_trusted(request) -> bool:
    """The caller's own address (REMOTE_ADDR, never a forwarded header) is in a trusted network."""
    return address_in_networks(request.META.get("REMOTE_ADDR", ""), settings.SMARTSOCKET_TRUSTED_NETWORKS)


class TokenOrTrustedNetwork(BasePermission):
    """Callers with a valid token (or a staff session) anywhere; without one only from trusted networks."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return (user is not None and user.is_authenticated) or client_is_trusted(request)


def callback_url_allowed(url: str) -> bool:
    """An http(s) URL whose host is an allowed host name or an address in an allowed network.

    Host names are not resolved: a name must be listed itself, so DNS cannot point an
    allowed-looking name at an internal address, and the check needs no network call.
    """
    if len(url) > CALLBACK_URL_MAX_LENGTH or not URL_CHARACTERS.fullmatch(url):
        return False
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if _address(host) is not None:
        return address_in_networks(host, settings.SMARTSOCKET_CALLBACK_ALLOWED_NETWORKS)
    return any(
        host == allowed or (allowed.startswith(".") and host.endswith(allowed))
        for allowed in (name.lower() for name in settings.SMARTSOCKET_CALLBACK_ALLOWED_HOSTS)
    )
