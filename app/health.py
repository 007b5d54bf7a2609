"""Liveness checks of each long-running part, run by ``berth health PART`` inside the
part's container (the compose healthchecks). Each returns None when healthy, else what
is wrong."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

from app.config import Settings

WORKER_STALE_SECONDS = 60  # the worker's loop touches its heartbeat every few seconds


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104


def check_web(settings: Settings) -> str | None:
    url = f"http://{_local(settings.host)}:{settings.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (fixed http URL)
            body = json.load(response)
    except OSError as exc:
        return f"{url}: {exc}"
    return None if body.get("status") == "ok" else f"{url} answered {body}"


def heartbeat_path(settings: Settings):
    """Touched by the worker's main loop at least every SAFETY_NET_SECONDS."""
    return settings.data_dir / "run" / "worker.alive"


def check_worker(settings: Settings) -> str | None:
    path = heartbeat_path(settings)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat yet ({path})"
    if age > WORKER_STALE_SECONDS:
        return f"its main loop has not run for {age:.0f} s"
    return None


def check_ssh(settings: Settings) -> str | None:
    address = (_local(settings.host), settings.ssh_port)
    try:
        with socket.create_connection(address, timeout=5) as connection:
            banner = connection.recv(64)
    except OSError as exc:
        return f"{address[0]}:{address[1]}: {exc}"
    return None if banner.startswith(b"SSH-2.0-") else f"unexpected banner {banner!r}"


def check_egress(settings: Settings) -> str | None:
    """The proxy answers on the egress network's gateway (where sandboxes reach it)."""
    from app import runtime

    try:
        gateway = runtime.connect(settings, timeout=10).egress_gateway(create=False)
        if gateway is None:
            return "egress proxy: the egress network is not there yet (the worker makes it)"
        with socket.create_connection((gateway, settings.egress_port), timeout=5):
            return None
    except (OSError, runtime.ProvisionError) as exc:
        return f"egress proxy: {exc}"


def check(settings: Settings, part: str) -> str | None:
    checks = {"web": check_web, "worker": check_worker, "ssh": check_ssh, "egress": check_egress}
    return checks[part](settings)
