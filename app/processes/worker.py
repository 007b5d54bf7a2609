"""``berth worker``: one per instance (its lock), until SIGTERM or SIGINT, which let the
jobs that are running finish."""

from __future__ import annotations

import logging
import signal
import threading

from app import runtime
from app.config import Settings, configure_logging
from app.workspaces import wakeup
from app.workspaces.worker import InstanceLock, Worker

log = logging.getLogger("berth.worker")


def run(settings: Settings) -> None:
    configure_logging(settings)
    lock = InstanceLock(settings)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    if not runtime.wait_for_engine(settings, log.warning, stop=stopped.is_set):
        lock.release()
        return
    worker = Worker(settings)

    def stop(signum, _frame):
        log.info("%s received; finishing running jobs", signal.Signals(signum).name)
        worker.stopping.set()
        wakeup.notify(settings.data_dir)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    finally:
        lock.release()
