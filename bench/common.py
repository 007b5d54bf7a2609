"""What the benchmarks share: starting work all at once, and leaving nothing behind."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests import services
from tests.berthapi import Client


def at_once(targets: list[Callable[[], None]]) -> float:
    """Run each target in a thread of its own, all started together; return the seconds
    until the last one ended."""
    threads = [threading.Thread(target=target) for target in targets]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def tear_down(api: Client, server: services.BerthServer, root: Path) -> None:
    """Delete every workspace the benchmark's `berth serve` holds, stop it, and remove
    what it made on the engine (its egress and build networks) and on disk."""
    for ws in api.call("GET", "/workspaces").json():
        api.call("DELETE", f"/workspaces/{ws['id']}")
    for ws in api.call("GET", "/workspaces").json():
        api.wait(ws["id"], "deleted", timeout=300)
    server.stop()
    services.remove_engine_objects([server.data_dir])
    shutil.rmtree(root, ignore_errors=True)
