"""``berth egress``: the egress gateway's process. It finds the sandbox behind each
connection by its address on the egress network, and records every decision."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import docker

from app import audit
from app.config import Settings, configure_logging
from app.db import short_connection
from app.egress import gateway, private_networks, rules_for
from app.models import Template, User, Workspace
from app.provisioner import engine
from app.provisioner.docker import LABEL_WORKSPACE, Provisioner

log = logging.getLogger("berth.egress")
CACHE_SECONDS = 5.0  # an allowlist change reaches open sandboxes within this


class Directory:
    """Source address -> the sandbox (workspace, allowlist) behind it."""

    def __init__(self, provisioner: Provisioner, always: list[gateway.Rule] = ()):
        self.provisioner = provisioner
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
        network = self.provisioner.ensure_egress_network()
        network.reload()
        for container_id, about in (network.attrs.get("Containers") or {}).items():
            if about.get("IPv4Address", "").split("/")[0] != address:
                continue
            try:
                labels = self.provisioner.client.containers.get(container_id).labels
            except docker.errors.NotFound:
                return None
            ws_id = int(labels.get(LABEL_WORKSPACE, "0") or 0)
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
    client = docker.DockerClient(base_url=settings.docker_host, timeout=60)
    provisioner = Provisioner(client, settings.instance, settings.subnet_pool)
    address = provisioner.egress_gateway()
    host, port = berth_address(settings)
    directory = Directory(provisioner, [gateway.Rule(sandbox_berth_host(settings), port)])
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
