"""Waking the worker the moment a job is recorded, without it polling on a timer.

The worker listens on a Unix datagram socket in the data dir; the web app sends it one
byte after writing a job. The database stays the source of truth: a lost wake-up only
delays a job until the worker's next safety-net look (a few seconds).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path


def socket_path(data_dir: Path) -> Path:
    return data_dir / "worker.sock"


def notify(data_dir: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(b"!", str(socket_path(data_dir)))


class Listener:
    def __init__(self, data_dir: Path):
        self.path = socket_path(data_dir)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait(self, timeout: float) -> bool:
        """Block until woken (True) or ``timeout`` seconds pass (False); drain extra wake-ups."""
        self.sock.settimeout(timeout)
        try:
            self.sock.recv(64)
        except TimeoutError:
            return False
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while self.sock.recv(64):
                pass
        return True

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
