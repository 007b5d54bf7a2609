"""Where Berth may connect on someone's behalf: a host name or address is resolved first,
and every address it resolves to is checked, whatever its spelling (``127.1``,
``2130706433``, ``0x7f.0.0.1``, ``[::ffff:127.0.0.1]``, a trailing dot, a name that
resolves to a private address). Loopback, link-local, private, shared (CGNAT), multicast,
reserved and unspecified addresses are refused, and so are IPv6 forms that carry one of
those IPv4 addresses (mapped, 6to4, Teredo, NAT64), unless the caller passes networks an
admin allowed. The caller then connects to the checked address, never to the name
again, so the answer cannot change in between (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# Deprecated ranges Python still calls global: 6to4 relays' anycast, IPv6 site-local.
_DEPRECATED = (ipaddress.ip_network("192.88.99.0/24"), ipaddress.ip_network("fec0::/10"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(Exception):
    """The destination is not one Berth connects to; the message says which rule."""


class Unresolved(DestinationRefused, OSError):
    """The name does not resolve (now): unreachable rather than refused."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if address.ipv4_mapped:
        found.append(address.ipv4_mapped)
    if address.sixtofour:
        found.append(address.sixtofour)
    if address.teredo:
        found += list(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def why_refused(address: Address, allowed: Iterable[Network] = ()) -> str | None:
    """The rule ``address`` breaks, in words, or None when Berth may connect to it."""
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address):
        candidates += _embedded_ipv4(address)
    for candidate in candidates:
        if any(candidate.version == net.version and candidate in net for net in allowed):
            continue
        for test, name in (
            (candidate.is_unspecified, "unspecified"),
            (candidate.is_loopback, "loopback"),
            (candidate.is_link_local, "link-local"),
            (candidate.is_multicast, "multicast"),
            (candidate.version == 4 and candidate in _SHARED, "shared (carrier-grade NAT)"),
            (candidate.is_private, "private"),
            (candidate.is_reserved, "reserved"),
            (
                any(candidate.version == n.version and candidate in n for n in _DEPRECATED),
                "deprecated",
            ),
            (not candidate.is_global, "not public"),
        ):
            if test:
                article = "an" if name[0] in "aeiou" else "a"
                return f"{address} is {article} {name} address"
    return None


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """Networks an admin allowed (``10.0.0.5``, ``192.168.1.0/24``, ``fd00::/8``)."""
    found = []
    for entry in entries:
        try:
            found.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an address or a network like 10.0.0.0/8") from None
    return found


def resolve(host: str, port: int, allowed: Iterable[Network] = ()) -> list[str]:
    """The addresses to connect to for ``host`` (a name or any spelling of an address),
    all of them checked; raise DestinationRefused if any is refused or none is found."""
    allowed = list(allowed)
    name = host.strip().strip("[]")
    if not name:
        raise DestinationRefused("no host was given")
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"{host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))
    for text in addresses:
        reason = why_refused(ipaddress.ip_address(text), allowed)
        if reason:
            shown = "" if text == name else f" ({host} resolves to it)"
            raise DestinationRefused(f"{reason}{shown}; Berth does not connect there")
    if not addresses:
        raise Unresolved(f"{host} does not resolve")
    return addresses


def connect(host: str, port: int, timeout: float, allowed: Iterable[Network] = ()):
    """A TCP connection to a checked address of ``host``."""
    error: OSError | None = None
    for address in resolve(host, port, allowed):
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            error = exc
    raise error or OSError(f"{host}:{port} did not answer")


class _CheckedConnection(HTTPSConnection):
    allowed: tuple = ()

    def _new_conn(self):
        return connect(self._dns_host, self.port, self.timeout, self.allowed)


class _CheckedAdapter(HTTPAdapter):
    def __init__(self, allowed: tuple):
        self.allowed = allowed
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        connection = type("Connection", (_CheckedConnection,), {"allowed": self.allowed})
        pool = type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": connection})
        self.poolmanager.pool_classes_by_scheme = {"https": pool}


class _PlainRefused(BaseAdapter):
    def send(self, request, **kwargs):
        raise DestinationRefused(f"{request.url} is not https; Berth fetches over https only")

    def close(self):
        pass


class _ProxiedCheckedAdapter(HTTPAdapter):
    """Through the operator's proxy: the proxy resolves the name, so Berth checks what
    it resolves to first (without pinning it: the proxy is trusted with the rest)."""

    def __init__(self, allowed: tuple):
        self.allowed = allowed
        super().__init__()

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        resolve(parts.hostname or "", parts.port or 443, self.allowed)
        return super().send(request, **kwargs)


def outbound_proxy() -> str | None:
    """The https proxy the operator set for Berth's processes, if any."""
    return os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or None


def checked_session(allowed: Iterable[Network] = ()) -> requests.Session:
    """A requests Session for https only whose every connection goes to a checked
    address: the check and the connection share one resolution. Where the operator set
    an https proxy, requests go through it, their host checked first."""
    session = requests.Session()
    if outbound_proxy():
        session.mount("https://", _ProxiedCheckedAdapter(tuple(allowed)))
    else:
        session.trust_env = False
        session.mount("https://", _CheckedAdapter(tuple(allowed)))
    session.mount("http://", _PlainRefused())
    return session
