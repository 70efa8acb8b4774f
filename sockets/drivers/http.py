"""The HTTP transport the HTTP drivers share: one pooled session per process, every request bounded, every
failure a DeviceError of its precise kind."""
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .base import DeviceProtocolError, DeviceTimeout, DeviceUnreachable

# Only connection failures are retried (once): a retry after a read timeout would double the
# time a dead plug holds the socket lock.
_session = requests.Session()
# Plugs are reached directly: no proxy or .netrc lookup from the environment on every request (~0.4 ms each).
_session.trust_env = False
for _scheme in ("http://", "https://"):
    _session.mount(_scheme, HTTPAdapter(pool_maxsize=32, max_retries=Retry(total=1, connect=1, read=0, status=0, other=0, backoff_factor=0.05)))


def device_request(method: str, url: str, *, address: str, timeout: tuple[float, float], **kwargs) -> requests.Response:
    """One request to a device at `address`, within (connect, read) `timeout`, never following a redirect."""
    try:
        return _session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.ConnectTimeout as exc:
        raise DeviceTimeout(f"{address}: no connection within {timeout[0]:g} s") from exc
    except requests.Timeout as exc:
        raise DeviceTimeout(f"{address}: no answer within {timeout[1]:g} s") from exc
    except requests.ConnectionError as exc:
        raise DeviceUnreachable(f"{address}: connection refused or reset") from exc
    except requests.RequestException as exc:
        raise DeviceProtocolError(f"{address}: {exc}") from exc
