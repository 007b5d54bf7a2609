"""``berth egress``: the egress gateway's process. It finds the sandbox behind each
connection by its address on the egress network, and records every decision."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

from app import audit
from app import runtime as runtimes
from app.config import Settings, configure_logging
from app.db import short_connection
from app.egress import gateway, private_networks, rules_for
from app.models import Template, User, Workspace
from app.runtime import ProvisionError, Runtime
from app.runtime.docker import engine

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


def run(settings: Settings) -> None:
    """Serve the proxy and the dead DNS on the egress network's gateway until stopped."""
    import signal

    configure_logging(settings)
    stopped = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.append(True))
    if not engine.wait_for(settings.docker_host, log.warning, stop=lambda: bool(stopped)):
        return
    runtime = runtimes.connect(settings)
    # The worker makes the egress network (it is the only writer); wait for it.
    address = runtime.egress_gateway(create=False)
    while address is None and not stopped:
        log.info("egress: waiting for the worker to make the egress network")
        time.sleep(2)
        address = runtime.egress_gateway(create=False)
    if address is None:
        return
    host, port = berth_address(settings)
    directory = Directory(runtime, [gateway.Rule(sandbox_berth_host(settings), port)])
    # Berth itself is reached where its operator put it, a private address included.
    aliases = {(gateway.BERTH_ALIAS, port): host, (sandbox_berth_host(settings), port): host}

    async def main():
        task = asyncio.create_task(
            gateway.serve(address, settings.egress_port, directory.lookup, record, aliases)
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            log.info("egress: stopping")

    asyncio.run(main())
