"""``berth ssh``: the SSH gateway, until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal

from app.config import Settings, configure_logging
from app.ssh.gateway import Gateway

log = logging.getLogger("berth.ssh")


def run(settings: Settings) -> None:
    """``berth ssh``: serve until SIGTERM or SIGINT."""
    configure_logging(settings)
    gateway = Gateway(settings)
    gateway.listen()

    def stop(signum, _frame):
        log.info("ssh: %s received; stopping", signal.Signals(signum).name)
        gateway.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    gateway.serve_forever()
