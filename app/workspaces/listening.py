"""The ports servers listen on inside a running workspace, for its page to offer with
one click (as VS Code and code-server notice a new server). Read from the kernel's own
tables, /proc/net/tcp and /proc/net/tcp6, inside the workspace as its user, with a
deadline and a bound on the output. What comes back is parsed strictly: the workspace
runs the reader, so it could answer anything; only port numbers come out of it."""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app import runtime as runtimes
from app.models import Workspace
from app.runtime import ProvisionError, Runtime

CACHE_SECONDS = 10.0  # a page polled every few seconds execs at most this often
MAX_OUTPUT = 256 * 1024
MAX_PORTS = 50
LISTEN = "0A"  # the kernel's TCP_LISTEN
# The addresses Berth's proxy reaches a server on (it connects to localhost inside the
# workspace): any address, or loopback. Others (Docker's own DNS on 127.0.0.11, a
# server bound to one interface) cannot be opened, so they are not offered.
_LOOPBACK = (
    "0100007F",  # 127.0.0.1
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
)
_ANY = ("00000000", "00000000000000000000000000000000", "0000000000000000FFFF000000000000")


@dataclass(frozen=True)
class Listening:
    port: int
    loopback_only: bool  # bound to 127.0.0.1 or ::1 only (Berth reaches those too)


def parse(text: str) -> list[Listening]:
    """The listening TCP ports in /proc/net/tcp{,6} text, at most MAX_PORTS, in order."""
    found: dict[int, bool] = {}
    for line in text.splitlines()[:100_000]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN:
            continue
        address, _, port_hex = fields[1].partition(":")
        if len(port_hex) != 4 or not all(c in string.hexdigits for c in port_hex):
            continue
        port = int(port_hex, 16)
        if port == 0 or address.upper() not in _LOOPBACK + _ANY:
            continue
        found[port] = found.get(port, True) and address.upper() in _LOOPBACK
    return [Listening(port, found[port]) for port in sorted(found)[:MAX_PORTS]]


_cache: dict[tuple[int, str], tuple[float, list[Listening] | None]] = {}
_lock = threading.Lock()


def listening(
    settings,
    ws: Workspace,
    clock: Callable[[], float] = time.monotonic,
    connect: Callable[[], Runtime] | None = None,
) -> list[Listening] | None:
    """What listens in running ``ws`` now (read at most every CACHE_SECONDS per container;
    None when it is not running or cannot be read: detection never makes an error)."""
    if ws.status != "running" or not ws.container_id:
        return None
    key = (ws.id, ws.container_id)
    with _lock:
        cached = _cache.get(key)
        if cached and clock() - cached[0] < CACHE_SECONDS:
            return cached[1]
        # Whoever reads next waits for the deadline too, not for this read.
        _cache[key] = (clock(), cached[1] if cached else None)
        for old in [k for k in _cache if k[0] == ws.id and k != key]:
            del _cache[old]
    try:
        runtime = connect() if connect else runtimes.connect(settings, timeout=10)
        try:
            done = runtime.exec(
                ws.container_id,
                ["cat", "/proc/net/tcp", "/proc/net/tcp6"],
                user=ws.remote_user or "root",
                timeout=5,
                max_output=MAX_OUTPUT,
            )
        finally:
            runtime.close()
    except (ProvisionError, OSError):
        return None
    found = parse(done.stdout) if done.exit_code == 0 or done.stdout else None
    with _lock:
        _cache[key] = (clock(), found)
    return found
