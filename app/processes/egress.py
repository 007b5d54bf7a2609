"""``berth egress``: the egress gateway of sandboxes (the allowlisting proxy and the
dead DNS) on the egress network's gateway address, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from app import runtime as runtimes
from app.config import Settings, configure_logging
from app.egress import gateway
from app.egress.directory import Directory, berth_address, record, sandbox_berth_host

log = logging.getLogger("berth.egress")


def run(settings: Settings) -> None:
    """Serve the proxy and the dead DNS on the egress network's gateway until stopped."""
    configure_logging(settings)
    stopped = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.append(True))
    if not runtimes.wait_for_engine(settings, log.warning, stop=lambda: bool(stopped)):
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
