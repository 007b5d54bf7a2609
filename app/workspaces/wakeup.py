"""Waking the worker the moment a job is recorded, and the requests that wait for a
job the moment it moved, without either polling on a short timer.

The worker listens on a Unix datagram socket in the data dir; the web app sends it one
byte after writing a job. The other way, each process with requests waiting (the web
app, the SSH gateway) listens on a socket of its own in ``waiters/``, and the worker
sends each one byte when a workspace starts to run, its environment is recorded or a
job ends. The database stays the source of truth: a lost wake-up only delays a job
until the worker's next safety-net look (a few seconds), and a waiting request until
its next look (a quarter of a second).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
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


def waiters_dir(data_dir: Path) -> Path:
    return data_dir / "waiters"


def tell_waiters(data_dir: Path) -> None:
    """One byte to every process waiting on a job (never blocking the worker: a full
    queue means that process has a wake-up pending anyway). A socket whose process is
    gone is removed."""
    entries = []
    # Never fails the job that calls it: the waiting requests look again anyway.
    with contextlib.suppress(OSError), os.scandir(waiters_dir(data_dir)) as found:
        entries = [entry.path for entry in found if entry.name.endswith(".sock")]
    if not entries:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in entries:
            try:
                sock.sendto(b"!", path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            except OSError:  # BlockingIOError: its queue is full
                pass


class Changes:
    """This process's ear for the worker's wake-ups: ``wait`` returns once one came after
    ``seen()`` was read, or after ``timeout`` seconds."""

    def __init__(self, data_dir: Path):
        folder = waiters_dir(data_dir)
        folder.mkdir(mode=0o700, exist_ok=True)
        # A random name: the web and SSH containers of the appliance share the data dir
        # but not their process ids, so a pid in the name could be another's.
        self.path = folder / f"{secrets.token_hex(8)}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self._count = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._listen, name="changes", daemon=True).start()

    def seen(self) -> int:
        return self._count

    def wait(self, seen: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._count != seen, timeout)

    def _listen(self) -> None:
        while True:
            try:
                self.sock.recv(64)
            except OSError:
                return
            with self._changed:
                self._count += 1
                self._changed.notify_all()


_changes: dict[tuple[int, Path], Changes] = {}
_changes_lock = threading.Lock()


def changes(data_dir: Path) -> Changes | None:
    """This process's listener for ``data_dir`` (made on first use; per process, so a
    forked child makes its own), or None where none can be made."""
    key = (os.getpid(), Path(data_dir))
    with _changes_lock:
        if key not in _changes:
            try:
                _changes[key] = Changes(data_dir)
            except OSError:
                return None
        return _changes[key]
