"""Fetching a request's http(s) image URL without letting the request reach this server's own network.

urllib cannot do this safely: it resolves the host again when it connects (a DNS-rebinding name answers
a public address to the check and 127.0.0.1 to the connection) and follows redirects unchecked. Here
each hop resolves its host once, refuses it if any of its addresses is not public (unless
ALLOW_PRIVATE_URLS=1), and connects to exactly that checked address with http.client (TLS still verifies
the certificate against the host name). Redirects (at most MAX_REDIRECTS) are followed by hand, each one
checked the same way. Proxies from the environment are not used: a proxy would resolve names itself.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urljoin, urlsplit

from .errors import APIError

if TYPE_CHECKING:
    from .server import ApiSettings

FETCH_TIMEOUT_S = 10
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)


def fetch_image(url: str, param: str, settings: ApiSettings) -> bytes:
    """The bytes at `url` (at most settings.max_image_bytes + 1 of them; the caller refuses more)."""
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise APIError(400, f"{param}: cannot download {url!r}: only http(s) URLs with a host are fetched", param)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = checked_address(parts.hostname, port, url, param, settings)
        connection = _pinned_connection(parts, port, address)
        try:
            connection.request("GET", _target(parts), headers={"User-Agent": "tuneforge-api", "Accept": "image/*"})
            response = connection.getresponse()
            if response.status in REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise APIError(400, f"{param}: {url!r} redirects without a Location", param)
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise APIError(400, f"{param}: cannot download {url!r} (HTTP {response.status})", param)
            return response.read(settings.max_image_bytes + 1)
        except (OSError, http.client.HTTPException) as error:
            raise APIError(400, f"{param}: cannot download {url!r} ({error})", param) from None
        finally:
            connection.close()
    raise APIError(400, f"{param}: more than {MAX_REDIRECTS} redirects; give the image's final URL", param)


def checked_address(host: str, port: int, url: str, param: str, settings: ApiSettings) -> str:
    """The one address `host` is fetched from, resolved once; APIError 403 when it is not public."""
    try:
        addresses = list(dict.fromkeys(_resolve(host, port)))
    except (OSError, UnicodeError):
        raise APIError(400, f"{param}: cannot resolve the host of {url!r}", param) from None
    if not addresses:
        raise APIError(400, f"{param}: cannot resolve the host of {url!r}", param)
    if not settings.allow_private_urls:
        # Every address must be public: a name with one public and one private address could be
        # connected to either.
        for address in addresses:
            if not _is_public(address):
                raise APIError(403, f"{param}: {url!r} points to {address}, a loopback, private, link-local or "
                               "reserved address; image URLs must be public (ALLOW_PRIVATE_URLS=1 allows them)",
                               param)
    return addresses[0]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global


def _resolve(host: str, port: int) -> list[str]:
    """Every address of `host` (tests replace this to play a DNS server)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to exactly `address` (tests replace this to reach a local server)."""
    return socket.create_connection((address, port), timeout)


def _target(parts: SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _pinned_connection(parts: SplitResult, port: int, address: str) -> http.client.HTTPConnection:
    host = parts.hostname or ""
    if parts.scheme == "https":
        return _PinnedHTTPS(host, port, address)
    return _PinnedHTTP(host, port, address)


class _PinnedHTTP(http.client.HTTPConnection):
    """Sends `Host: <name>` but connects to the address that was checked, never resolving again."""

    def __init__(self, host: str, port: int, address: str):
        super().__init__(host, port, timeout=FETCH_TIMEOUT_S)
        self.address = address

    def connect(self) -> None:
        self.sock = _connect(self.address, self.port, FETCH_TIMEOUT_S)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str):
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=FETCH_TIMEOUT_S, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = _connect(self.address, self.port, FETCH_TIMEOUT_S)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
