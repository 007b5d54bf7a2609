"""The worker wakes the requests that wait for a job (app.workspaces.wakeup.Changes)
instead of each looking at the database fifty times a second: a burst of twenty
waiting creates used to cost the web process 1.7 s of CPU the engine needed."""

from __future__ import annotations

import os
import socket
import threading
from types import SimpleNamespace

from app.workspaces import service, wakeup


def test_a_waiter_is_woken_by_the_worker_and_not_otherwise(tmp_path):
    changes = wakeup.changes(tmp_path)
    assert changes is wakeup.changes(tmp_path)  # one per process and data dir
    seen = changes.seen()
    changes.wait(seen, 0.05)  # nothing said: the timeout ends it
    assert changes.seen() == seen

    woken = threading.Event()

    def waiter():
        changes.wait(seen, 120)
        woken.set()

    threading.Thread(target=waiter, daemon=True).start()
    wakeup.tell_waiters(tmp_path)
    assert woken.wait(30), "the waiter was not woken"
    assert changes.seen() != seen


def test_the_worker_never_blocks_on_a_waiter_and_forgets_a_dead_one(tmp_path):
    folder = wakeup.waiters_dir(tmp_path)
    folder.mkdir()
    # A process that went away: its socket file is left.
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    gone.bind(str(folder / "1-0.sock"))
    gone.close()
    # A process that never reads: its queue fills.
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(folder / "2-0.sock"))
    done = threading.Event()

    def worker():
        for _ in range(2000):
            wakeup.tell_waiters(tmp_path)
        done.set()

    threading.Thread(target=worker, daemon=True).start()
    try:
        assert done.wait(60), "tell_waiters blocked on a full queue"
        assert sorted(os.listdir(folder)) == ["2-0.sock"]
    finally:
        deaf.close()
    wakeup.tell_waiters(tmp_path / "nowhere")  # no waiters at all: nothing to do


def test_a_waiting_request_looks_again_when_woken(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "WOKEN_LOOK", 600.0)  # only a wake-up can end the wait
    # No database here: the request's connection is closed after its first second.
    monkeypatch.setattr(service, "database", SimpleNamespace(close=lambda: None))
    state = {"done": False, "looks": 0}

    def fetch():
        state["looks"] += 1
        return state["done"]

    result = {}
    waiting = threading.Thread(
        target=lambda: result.setdefault("found", service._poll(fetch, bool, 900, tmp_path)),
        daemon=True,
    )
    waiting.start()
    changes = wakeup.changes(tmp_path)
    while state["looks"] == 0:  # its first look is behind it
        changes.wait(changes.seen(), 0.01)
    state["done"] = True
    wakeup.tell_waiters(tmp_path)
    waiting.join(60)
    assert result == {"found": True}
    assert state["looks"] == 2
