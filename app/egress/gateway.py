"""Berth's egress gateway for workspaces whose template limits their network: an HTTP
proxy (plain HTTP and HTTPS CONNECT) that lets through only the host names and ports on
the workspace's allowlist, and a DNS server that resolves nothing.

Sandboxes sit on an internal Docker network with no route out; the only addresses they
reach are this gateway's, on the network's gateway IP. Root inside a sandbox cannot
change that: the network, the allowlist and the firewall live outside its container.
Every connection attempt (allowed or denied) and every DNS lookup is recorded in the
audit log against the workspace, with host, port, decision and bytes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app import destinations

log = logging.getLogger("berth.egress")

HEAD_LIMIT = 64 * 1024
MAX_RECENT = 10_000  # (address, name) pairs remembered to record each lookup once per 5 s
CONNECT_TIMEOUT = 15.0


@dataclass(frozen=True)
class Rule:
    host: str  # "pypi.org", "*.pythonhosted.org"
    port: int | None  # None: 80 and 443

    def matches(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        if self.port is None and port not in (80, 443):
            return False
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and host != self.host[2:]
        return host == self.host


class AllowlistError(ValueError):
    """An allowlist entry is not host, host:port or *.domain[:port]; says which."""


def parse_rule(entry: str) -> Rule:
    text = str(entry).strip().lower()
    host, port = text, None
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise AllowlistError(f"{entry!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    bare = host[2:] if host.startswith("*.") else host
    labels = bare.split(".")
    if (
        not bare
        or "*" in bare
        or not all(
            label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)
            for label in labels
        )
    ):
        raise AllowlistError(
            f"{entry!r} is not a host name: write host, host:port or *.domain[:port]"
        )
    return Rule(host, port)


def parse_allowlist(entries) -> list[Rule]:
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise AllowlistError("the allowlist must be a list of host names")
    return [parse_rule(e) for e in entries]


def allowed(rules: list[Rule], host: str, port: int) -> bool:
    return any(rule.matches(host, port) for rule in rules)


@dataclass
class Source:
    """Who is behind a connection: the workspace, its allowlist, how to record."""

    workspace_id: int
    label: str  # owner.name
    rules: list[Rule]
    # Private networks an admin allowed on the workspace's template (limits.egress_private);
    # every other non-public address is refused after resolution, whatever the allowlist.
    private: list = field(default_factory=list)


Lookup = Callable[[str], Source | None]  # source IP -> the sandbox behind it
Record = Callable[[Source | None, str, dict], None]  # (source, action, detail)


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _target(method: str, target: str) -> tuple[str, int, str]:
    """(host, port, origin-form path) of a proxy request."""
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        return host.strip("[]"), int(port), ""
    if not target.startswith("http://"):
        raise ValueError("only http:// URLs and CONNECT go through this proxy")
    rest = target[len("http://") :]
    authority, slash, path = rest.partition("/")
    host, colon, port = authority.rpartition(":")
    if not colon or not port.isdigit():
        host, port = authority, "80"
    return host.strip("[]"), int(port), "/" + path if slash else "/"


# The name sandboxes reach Berth by when its public URL is on this machine's loopback
# (which from inside a sandbox would be the sandbox itself).
BERTH_ALIAS = "berth.internal"


class Proxy:
    def __init__(
        self,
        lookup: Lookup,
        record: Record,
        aliases: dict[tuple[str, int], str] | None = None,
    ):
        self.lookup, self.record = lookup, record
        # (host name, port) -> where the proxy connects instead: Berth itself, exactly
        # there; the same name on any other port is checked like any destination.
        self.aliases = aliases or {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        peer = writer.get_extra_info("peername")[0]
        source = self.lookup(peer)
        host, port, method = "?", 0, "?"
        try:
            head = await asyncio.wait_for(_read_head(reader), 30)
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            host, port, path = _target(method, target)
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            await self._refuse(writer, 400, "a proxy request (CONNECT host:port or GET http://…)")
            return
        detail = {"host": host, "port": port, "method": method, "source_ip": peer}
        if source is None:
            self.record(None, "egress.deny", {**detail, "reason": "not a sandbox"})
            await self._refuse(writer, 403, "this address is not a Berth sandbox")
            return
        if not allowed(source.rules, host, port):
            self.record(source, "egress.deny", {**detail, "reason": "not in the allowlist"})
            await self._refuse(
                writer, 403, f"{host}:{port} is not in the allowlist of {source.label}"
            )
            return
        started = time.monotonic()
        try:
            addresses = await self._addresses(source, host, port)
        except destinations.DestinationRefused as exc:
            self.record(source, "egress.deny", {**detail, "reason": str(exc)})
            await self._refuse(writer, 403, f"{host}:{port} is refused: {exc}")
            return
        try:
            upstream_reader, upstream_writer = await self._open(addresses, port)
        except (OSError, TimeoutError) as exc:
            self.record(source, "egress.allow", {**detail, "error": str(exc) or "timeout"})
            await self._refuse(writer, 502, f"{host}:{port} did not answer: {exc}")
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            # Origin-form request line; the connection closes after one exchange.
            kept = [
                line
                for line in lines[1:]
                if line and not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
            ]
            request = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
            upstream_writer.write("\r\n".join(request).encode("latin-1"))
        sent, received = await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
        )
        self.record(
            source,
            "egress.allow",
            {
                **detail,
                "bytes_out": sent,
                "bytes_in": received,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    async def _addresses(self, source: Source, host: str, port: int) -> list[str]:
        """Where to connect: an alias's own target (Berth itself, set by the operator), or
        the checked addresses ``host`` resolves to (app.destinations)."""
        if (host.lower().rstrip("."), port) in self.aliases:
            return [self.aliases[(host.lower().rstrip("."), port)]]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, destinations.resolve, host, port, source.private)

    async def _open(self, addresses: list[str], port: int):
        error: Exception = OSError("no address")
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(address, port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                error = exc
        raise error

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, text: str) -> None:
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
        body = f"berth egress: {text}\n".encode()
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            await writer.drain()
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    total = 0
    try:
        while data := await reader.read(65536):
            total += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()
    return total


class DeadDns(asyncio.DatagramProtocol):
    """Answers every query REFUSED at once (no timeouts inside) and records the names."""

    def __init__(self, lookup: Lookup, record: Record):
        self.lookup, self.record = lookup, record
        self.recent: dict[tuple[str, str], float] = {}

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr):
        if len(data) < 12:
            return
        name = _query_name(data)
        # REFUSED: the query's id and question, flags QR + RD + RA, RCODE 5, no answers.
        flags = 0x8000 | (data[2] << 8 & 0x0100) | 0x0080 | 5
        reply = data[:2] + struct.pack(">HHHHH", flags, 1 if name else 0, 0, 0, 0)
        self.transport.sendto(reply + (data[12:] if name else b""), addr)
        key = (addr[0], name)
        now = time.monotonic()
        if now - self.recent.get(key, 0) > 5:  # one record per name per 5 s
            if len(self.recent) >= MAX_RECENT:
                self.recent = {k: t for k, t in self.recent.items() if now - t <= 5}
            self.recent[key] = now
            self.record(self.lookup(addr[0]), "egress.dns", {"name": name, "source_ip": addr[0]})


def _query_name(data: bytes) -> str:
    labels, offset = [], 12
    try:
        while (length := data[offset]) != 0:
            labels.append(data[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        return ".".join(labels)[:253]
    except IndexError:
        return ""


async def serve(
    address: str,
    proxy_port: int,
    lookup: Lookup,
    record: Record,
    aliases: dict[tuple[str, int], str] | None = None,
):
    """Run the proxy and the DNS server on ``address`` until cancelled."""
    proxy = Proxy(lookup, record, aliases)
    server = await asyncio.start_server(proxy.handle, address, proxy_port, limit=HEAD_LIMIT)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DeadDns(lookup, record), local_addr=(address, 53), family=socket.AF_INET
    )
    log.info("egress: proxy on %s:%s, DNS on %s:53", address, proxy_port, address)
    try:
        async with server:
            await server.serve_forever()
    finally:
        transport.close()
