"""Pieces of the SSH gateway that need no server."""

import base64
import threading

import pytest

from app.ssh import client_config, keys
from app.ssh.gateway import FailureLimiter

URL = "http://berth.example"
GATEWAY = {"host": "berth.example", "port": 2222, "host_key": "ssh-ed25519 AAAA"}


def test_block_is_replaced_in_place_and_the_rest_kept(tmp_path):
    block = client_config.render(URL, GATEWAY, [{"name": "a"}], tmp_path / "kh", "berth-", None)
    text = client_config.replace_block("Host x\n  User y\n", URL, block)
    assert text.startswith("Host x\n  User y\n\n# --- BEGIN berth")
    newer = client_config.render(URL, GATEWAY, [{"name": "b"}], tmp_path / "kh", "berth-", None)
    updated = client_config.replace_block(text + "Host z\n", URL, newer)
    assert "Host berth-b" in updated and "Host berth-a" not in updated
    assert updated.endswith("Host z\n") and updated.count("BEGIN berth") == 1
    assert client_config.replace_block(updated, URL, newer) == updated


def test_a_broken_block_is_refused_not_guessed():
    begin, _ = client_config.markers(URL)
    with pytest.raises(client_config.ConfigSshError, match="no END"):
        client_config.replace_block(f"{begin}\nHost a\n", URL, "x\n")


def test_fingerprint_matches_ssh_keygen_format():
    blob = base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIPdQooCTLlr5xbThpV+XD6DrNusIuAb1ed+6OcN6MTCc")
    assert keys.fingerprint(blob) == "SHA256:x9bblV1JV6XyJcAViSpj3a3kQAL4B9O8k73mhmjpTUM"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "OpenSSH format"),
        ("ssh-ed25519", "OpenSSH format"),
        ("sk-ssh-ed25519@openssh.com AAAA", "not supported"),
        ("ssh-foo AAAA", "not a public key type"),
        ("ssh-ed25519 AAAA", "damaged"),
    ],
)
def test_bad_keys_are_named(text, message):
    with pytest.raises(keys.SshKeyError, match=message):
        keys.parse(text)


def test_limiter_blocks_after_the_limit_and_forgives():
    limiter = FailureLimiter(2, window=60)
    limiter.fail("1.2.3.4")
    limiter.fail("1.2.3.4")
    assert limiter.blocked("1.2.3.4") and not limiter.blocked("5.6.7.8")
    limiter.forgive("1.2.3.4")
    assert not limiter.blocked("1.2.3.4")


def test_the_limiter_forgets_addresses_and_holds_a_bounded_number(monkeypatch):
    from app.ssh import gateway

    now = [1000.0]
    monkeypatch.setattr(gateway.time, "monotonic", lambda: now[0])
    limiter = FailureLimiter(3, window=60)
    limiter.fail("10.0.0.1")
    now[0] += 61  # the window has passed: nothing to hold for that address
    assert not limiter.blocked("10.0.0.1") and "10.0.0.1" not in limiter._failures
    monkeypatch.setattr(gateway, "MAX_TRACKED_ADDRESSES", 100)
    for n in range(500):
        now[0] += 0.001
        limiter.fail(f"192.0.2.{n % 250}-{n}")
    assert len(limiter._failures) <= 100
    for _ in range(3):
        limiter.fail("203.0.113.9")
    assert limiter.blocked("203.0.113.9")  # the newest are the ones kept


def test_connections_waiting_to_sign_in_are_capped(monkeypatch):
    from app.ssh import gateway

    gw = gateway.Gateway.__new__(gateway.Gateway)  # only the admission counters
    gw._waiting, gw._waiting_lock = {}, threading.Lock()
    admitted = [
        gw.admit("198.51.100.1") for _ in range(gateway.MAX_UNAUTHENTICATED_PER_ADDRESS + 3)
    ]
    assert admitted.count(True) == gateway.MAX_UNAUTHENTICATED_PER_ADDRESS
    assert all(gw.admit(f"198.51.100.{n}") for n in range(2, 50))
    others = [gw.admit(f"203.0.113.{n}") for n in range(100)]
    assert sum(gw._waiting.values()) == gateway.MAX_UNAUTHENTICATED
    assert not all(others)
    gw.signed_in_or_gone("198.51.100.1")  # one signed in: room for one more from there
    assert gw.admit("198.51.100.1")


def test_keyboard_interactive_answers_are_bounded_before_paramiko_reads_them():
    """paramiko reads as many answers as the client claims before the server is asked;
    Berth asks none, so a claim beyond a handful ends the connection (the real gateway:
    tests/test_ssh.py)."""
    from paramiko.auth_handler import AuthHandler
    from paramiko.message import Message
    from paramiko.ssh_exception import SSHException

    from app.ssh import paramiko_limits

    paramiko_limits.install()
    huge = Message()
    huge.add_int(0xFFFFFFFF)
    huge.rewind()
    with pytest.raises(SSHException, match="4294967295 parts"):
        AuthHandler._parse_userauth_info_response(None, huge)


def test_a_session_keeps_a_bounded_environment_from_the_client():
    """A client's env requests are kept until the session starts: only the names it may
    send (LANG, TERM, LC_*...), each short, and not without end."""
    from app.ssh.session import MAX_ENV_NAME, MAX_ENV_VALUE, MAX_ENV_VARIABLES, Session

    session = Session(connection=None, channel=None)
    assert session.set_env("LANG", "C.UTF-8") and session.env == {"LANG": "C.UTF-8"}
    assert not session.set_env("LD_PRELOAD", "/tmp/x.so")  # not a name it may send
    assert not session.set_env("LC_" + "X" * MAX_ENV_NAME, "1")
    assert not session.set_env("LC_BIG", "x" * (MAX_ENV_VALUE + 1))
    for n in range(MAX_ENV_VARIABLES - 1):
        assert session.set_env(f"LC_{n}", "v")
    assert not session.set_env("LC_ONE_MORE", "v")
    assert session.set_env("LANG", "C")  # one it has may change
    assert len(session.env) == MAX_ENV_VARIABLES


def test_a_flood_of_terminal_sizes_takes_one_thread_and_ends_on_the_last():
    """Each window-change used to start a thread and an engine call: now one thread at a
    time applies the latest size, and the last one sent is the one the exec has."""
    import threading
    import time
    from types import SimpleNamespace

    from app.ssh.session import Pty, Session

    applied, gate = [], threading.Event()

    def resize_exec(exec_id, height, width):
        gate.wait(5)  # a slow engine
        applied.append((height, width))

    connection = SimpleNamespace(
        gateway=SimpleNamespace(runtime=SimpleNamespace(resize_exec=resize_exec)), target="t"
    )
    session = Session(connection=connection, channel=None, pty=Pty("xterm", 80, 24))
    session.exec_id = "e"
    before = threading.active_count()
    for n in range(1, 501):
        session.resize(80 + n, 24 + n)
    assert threading.active_count() <= before + 1
    gate.set()
    deadline = time.monotonic() + 10
    while session.resizing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not session.resizing
    assert applied[-1] == (524, 580) and len(applied) <= 2


def test_readable_sees_input_and_an_end_on_any_descriptor():
    """The relay's look at a socket uses poll: descriptors above 1024 (a busy gateway)
    work as well as low ones."""
    import os
    import resource
    import socket

    from app.ssh.relay import readable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:  # room for a descriptor above select's 1024
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 1100)
    try:
        high_sock = socket.socket(fileno=os.dup(high))
        assert not readable(ours) and not readable(high_sock)
        theirs.sendall(b"x")
        assert readable(ours) and readable(high_sock)
        assert ours.recv(1) == b"x"
        theirs.close()
        assert readable(ours)  # the end counts: a recv returns at once
        high_sock.close()
    finally:
        os.close(high)
        ours.close()
