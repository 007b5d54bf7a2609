"""Moving bytes between SSH channels and sockets: tunnels into a workspace, and
forwarded-agent sockets inside the workspace."""

from __future__ import annotations

import logging
import os
import secrets
import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko

from app.readiness import Readable

log = logging.getLogger("berth.ssh")

# A write, either way, is at most this: the loop that writes is the one that reads the
# other way, so a bigger write could wait forever on a peer that echoes.
CHUNK = 256 * 1024
# A channel read asks for more than the channel's window holds, so it takes all that came:
# paramiko moves what a shorter read leaves to the front of its buffer, again each read.
# It is written CHUNK by CHUNK (send_in_parts).
CHANNEL_READ = 2 * paramiko.common.DEFAULT_WINDOW_SIZE


def readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has input (or its end) now. poll, not select: a busy gateway holds
    descriptors above select's ceiling of 1024 (app.readiness)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def send_in_parts(sock: socket.socket, data: bytes, answer: Callable[[], bool]) -> bool:
    """Write ``data`` a CHUNK at a time; between the parts, when the peer has said
    something, ``answer()`` passes it on (False: the peer is done, and so is this)."""
    for start in range(0, len(data), CHUNK):
        if start and readable(sock) and not answer():
            return False
        sock.sendall(data[start : start + CHUNK])
    return True


LOOPBACK_NAMES = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}


def relay(
    channel: paramiko.Channel,
    sock: socket.socket,
    on_input: Callable[[], None] | None = None,
) -> None:
    """Copy both ways until both sides are done, passing half-closes on."""
    channel_open = socket_open = True
    waiting = Readable(channel, sock)
    try:
        while channel_open or socket_open:
            ready = waiting.wait(5)
            if channel.closed:
                break
            data = b""
            if channel in ready:
                data = channel.recv(CHANNEL_READ)
                if data:
                    back = (lambda: _back(sock, channel)) if socket_open else (lambda: True)
                    if not send_in_parts(sock, data, back):
                        socket_open = False
                        waiting.drop(sock)
                        channel.shutdown_write()
                    if on_input:
                        on_input()
                else:
                    channel_open = False
                    waiting.drop(channel)
                    sock.shutdown(socket.SHUT_WR)
            # Only a write in parts may have taken what the socket had: look again then.
            drained = len(data) > CHUNK and not readable(sock)
            if socket_open and sock in ready and not drained and not _back(sock, channel):
                socket_open = False
                waiting.drop(sock)
                channel.shutdown_write()
    except OSError:
        pass  # either side went away: close both
    finally:
        waiting.close()
        sock.close()
        channel.close()


def _back(sock: socket.socket, channel: paramiko.Channel) -> bool:
    """What the socket's side said, on to the channel; False at its end."""
    data = sock.recv(CHUNK)
    if data:
        channel.sendall(data)
    return bool(data)


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
