"""``berth egress``: the egress gateway's process. It finds the sandbox behind each
connection by its address on the egress network, and records every decision."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from app import audit
from app.config import Settings
from app.db import short_connection
from app.egress import gateway, private_networks, rules_for
from app.models import Template, User, Workspace
from app.runtime import ProvisionError, Runtime

log = logging.getLogger("berth.egress")
CACHE_SECONDS = 5.0  # an allowlist change reaches open sandboxes within this


class Directory:
    """Source address -> the sandbox (workspace, allowlist) behind it."""

    def __init__(self, runtime: Runtime, always: list[gateway.Rule] = ()):
        self.runtime = runtime
        self.always = list(always)  # Berth itself: the sandbox's keep-alive, files, done
        self._cache: dict[str, tuple[float, gateway.Source | None]] = {}

    def lookup(self, address: str) -> gateway.Source | None:
        found = self._cache.get(address)
        if found and found[0] > time.monotonic():
            return found[1]
        source = self._find(address)
        now = time.monotonic()
        if len(self._cache) >= 4096:  # addresses come from the egress subnets only, but still
            self._cache = {a: hit for a, hit in self._cache.items() if hit[0] > now}
        self._cache[address] = (now + CACHE_SECONDS, source)
        return source

    def _find(self, address: str) -> gateway.Source | None:
        # Asked of the engine, not of the recorded addresses: a stale record must never
        # lend one sandbox another's allowlist.
        try:
            ws_id = self.runtime.owner_on_egress(address)
        except ProvisionError as exc:
            log.warning("egress: cannot tell whose %s is: %s", address, exc)
            return None
        if ws_id is not None:
            with short_connection():
                ws = (
                    Workspace.select(Workspace, User, Template)
                    .join(User)
                    .switch(Workspace)
                    .join(Template)
                    .where(Workspace.id == ws_id)
                    .first()
                )
                if ws is None:
                    return None
                try:
                    rules, private = rules_for(ws), private_networks(ws)
                except (gateway.AllowlistError, ValueError) as exc:
                    log.warning(
                        "egress: %s has a bad allowlist (%s); nothing allowed", ws.name, exc
                    )
                    rules, private = [], []
                return gateway.Source(
                    ws.id, f"{ws.owner.username}.{ws.name}", rules + self.always, private
                )
        return None


def record(source: gateway.Source | None, action: str, detail: dict) -> None:
    if action != "egress.allow":
        outcome = "denied"
    else:  # allowed, but the host may not have answered
        outcome = "failure" if "error" in detail else "success"
    with short_connection():
        audit.record(
            action,
            actor=f"sandbox:{source.label}"[:64] if source else "unknown",
            source_ip=detail.pop("source_ip", None),
            target=f"workspace:{source.label}" if source else None,
            outcome=outcome,
            **detail,
        )


def berth_address(settings: Settings) -> tuple[str, int]:
    public = urlsplit(settings.public_url)
    return public.hostname, public.port or (443 if public.scheme == "https" else 80)


def sandbox_berth_host(settings: Settings) -> str:
    """The host name a sandbox reaches Berth by (through the proxy)."""
    host, _ = berth_address(settings)
    return gateway.BERTH_ALIAS if host in ("127.0.0.1", "localhost", "::1") else host


def sandbox_berth_url(settings: Settings) -> str:
    public = urlsplit(settings.public_url)
    host, port = berth_address(settings)
    if sandbox_berth_host(settings) == host:
        return settings.public_url
    return f"{public.scheme}://{gateway.BERTH_ALIAS}:{port}"
