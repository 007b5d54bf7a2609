"""A workspace can answer on the IDE's port itself once code-server is stopped (it stops
when idle): Berth's probe of that port, asked on every open of an IDE, must neither hang
nor swallow an endless answer nor be fooled, and however a workspace makes its IDE look
(answering now and then) it cannot make launches pile up. Beside each: the real answer
still works."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime, timedelta

import pytest

from app import accounts
from app.models import Workspace
from app.runtime.layout import CODE_SERVER_PORT
from app.workspaces import ide
from app.workspaces import ide_sessions as sessions


def _serve(address: str, reply) -> socket.socket:
    """A server on ``address``:CODE_SERVER_PORT that answers each connection with
    ``reply(conn)``."""
    listener = socket.create_server((address, CODE_SERVER_PORT))

    def loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=reply, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return listener


def _healthy(conn):
    conn.recv(1024)
    body = b'{"status":"alive","lastHeartbeat":1796032918800}'
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    conn.close()


def _dripping(conn):
    conn.recv(1024)
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):
            conn.sendall(b"x")
            time.sleep(0.2)
    except OSError:
        pass


def _endless(conn):
    conn.recv(1024)
    try:
        conn.sendall(b'HTTP/1.1 200 OK\r\n\r\n{"status":"')
        while True:
            conn.sendall(b"a" * 65536)
    except OSError:
        pass


def _nested(conn):
    conn.recv(1024)
    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"[" * 2000)
    conn.close()


@pytest.mark.parametrize(
    "address, reply",
    [("127.0.0.51", _dripping), ("127.0.0.52", _endless), ("127.0.0.53", _nested)],
)
def test_a_hostile_answer_on_the_ide_port_is_no_answer_and_costs_little(address, reply):
    listener = _serve(address, reply)
    try:
        started = time.monotonic()
        assert ide.healthz(address, timeout=1.0) is None
        assert time.monotonic() - started < 2.0
    finally:
        listener.close()


def test_code_servers_own_answer_is_read():
    listener = _serve("127.0.0.54", _healthy)
    try:
        assert ide.healthz("127.0.0.54") == {
            "status": "alive",
            "lastHeartbeat": 1796032918800,
        }
    finally:
        listener.close()


NOW = datetime(2026, 11, 30, 10, 0, 0)


@pytest.fixture
def workspace(instance):
    owner = accounts.create_user("ivy", "long enough")
    return Workspace.create(owner=owner, name="w", status="running", container_id="c1")


def test_an_ide_that_answers_now_and_then_cannot_pile_up_launches(workspace, monkeypatch):
    """Each open after a failed probe may claim a launch; an IDE that answered a moment
    ago is not launched again, and one process runs one launch per workspace at once."""
    started = threading.Event()
    release = threading.Event()
    runs = []

    def slow_launch(settings, ws_id):
        runs.append(ws_id)
        started.set()
        release.wait(10)
        with sessions._launching_lock:
            sessions._launching.discard(ws_id)

    monkeypatch.setattr(sessions, "_launch_in_background", slow_launch)
    assert sessions.opened(None, workspace, NOW).state == sessions.STARTING
    assert started.wait(5)
    # The claim goes stale meanwhile; opens keep coming: still the one launch.
    later = NOW + sessions.LAUNCH_TAKES_AT_MOST
    for _ in range(20):
        sessions.opened(None, Workspace.get_by_id(workspace.id), later)
    assert runs == [workspace.id]
    release.set()
    # It answered (READY): a failed probe right after does not launch again at once.
    row = Workspace.get_by_id(workspace.id)
    sessions.answered(row, later)
    assert not sessions.claim(Workspace.get_by_id(workspace.id), later + timedelta(seconds=1))
    assert sessions.claim(Workspace.get_by_id(workspace.id), later + sessions.RETRY)
