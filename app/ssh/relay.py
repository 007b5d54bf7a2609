"""Moving bytes between SSH channels and sockets: TCP connections opened inside a
workspace's network namespace, and forwarded-agent sockets inside the workspace."""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko

log = logging.getLogger("berth.ssh")

CHUNK = 256 * 1024
CLONE_NEWNET = 0x40000000
LOOPBACK_NAMES = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def connect_in_namespace(pid: int, host: str, port: int, timeout: float = 10) -> socket.socket:
    """A TCP connection opened from inside the network namespace of process ``pid`` (a
    workspace), so its 127.0.0.1 is the workspace's own loopback. The socket keeps that
    namespace; the throwaway thread that entered it ends, the gateway's other threads
    never leave the host's."""
    outcome: dict = {}

    def enter_and_connect():
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            outcome["socket"] = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=enter_and_connect, name=f"netns-{pid}", daemon=True)
    worker.start()
    worker.join(timeout + 1)
    if "socket" not in outcome:
        raise outcome.get("error") or TimeoutError(f"connecting to {host}:{port} timed out")
    sock = outcome["socket"]
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def relay(
    channel: paramiko.Channel,
    sock: socket.socket,
    on_input: Callable[[], None] | None = None,
) -> None:
    """Copy both ways until both sides are done, passing half-closes on."""
    channel_open = socket_open = True
    try:
        while channel_open or socket_open:
            readable = ([channel] if channel_open else []) + ([sock] if socket_open else [])
            ready, _, _ = select.select(readable, [], [], 5)
            if channel.closed:
                break
            if channel in ready:
                data = channel.recv(CHUNK)
                if data:
                    sock.sendall(data)
                    if on_input:
                        on_input()
                else:
                    channel_open = False
                    sock.shutdown(socket.SHUT_WR)
            if sock in ready:
                data = sock.recv(CHUNK)
                if data:
                    channel.sendall(data)
                else:
                    socket_open = False
                    channel.shutdown_write()
    except OSError:
        pass  # either side went away: close both
    finally:
        sock.close()
        channel.close()


class AgentForward:
    """A Unix socket in the workspace's agent folder (bind-mounted read-only into it)
    that reaches the SSH client's agent: each connection opens an
    auth-agent@openssh.com channel back to the client."""

    def __init__(
        self,
        transport: paramiko.Transport,
        host_dir: Path,
        uid: int,
        gid: int,
        allowed: Callable[[], bool] = lambda: True,
    ):
        self.transport = transport
        self.allowed = allowed
        self.name = f"agent-{secrets.token_hex(6)}.sock"
        self.path = host_dir / self.name
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        os.chown(self.path, uid, gid, follow_symlinks=False)
        self.listener.listen(8)
        threading.Thread(target=self._serve, name="ssh-agent", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.allowed():
                log.info("ssh: agent use refused in a workspace that is now shared")
                conn.close()
                continue
            try:
                channel = self.transport.open_forward_agent_channel()
            except paramiko.SSHException as exc:
                log.info("ssh: agent channel refused by the client: %s", exc)
                conn.close()
                continue
            threading.Thread(target=relay, args=(channel, conn), daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        self.path.unlink(missing_ok=True)
