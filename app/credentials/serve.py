"""Berth's git credentials inside a workspace, for one SSH session of its owner: a git
credential helper socket and an SSH agent socket in the workspace's agent folder (a
read-only bind at /run/berth-agent). git reaches the first with its own
``credential-cache`` client (nothing to install in the image), ssh the second through
SSH_AUTH_SOCK. Each answer is read from Berth at that moment: a removed credential is
gone at once, and no secret is ever written into the workspace.

Everyone who may use a workspace runs as its one user and could connect to any socket
in it, so each connection is checked: the process asking must belong to this session
(its process tree), and the workspace must still be its owner's alone (no shares), as
for a forwarded agent."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.credentials import agent, store
from app.credentials.vault import VaultError
from app.db import short_connection
from app.runtime.layout import AGENT_SOCKET_DIR

log = logging.getLogger("berth.ssh")
MAX_REQUEST = 64 * 1024
# Each socket set answers a few connections at once, each for a bounded time: a
# workspace cannot tie up the gateway's threads (one more is turned away at once).
MAX_CONNECTIONS = 8
HELPER_SECONDS = 10.0
AGENT_SECONDS = 120.0


def peer(conn: socket.socket) -> tuple[int | None, int | None]:
    """The process at the other end of a Unix socket (as this process's /proc names it)
    and its user id."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None, None
    pid, uid, _gid = struct.unpack("3i", raw)
    return pid or None, uid


def parse_request(data: bytes) -> dict[str, str]:
    """git's credential-cache request: ``key=value`` lines (action, timeout, protocol,
    host, …); the first value of each key counts."""
    found: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key not in found:
            found[key] = value
    return found


def helper_answer(user_id: int, request: dict[str, str]) -> bytes:
    """The username and token for the asked host, or nothing (git then asks the next
    helper, or fails with its own words)."""
    if request.get("action") != "get" or request.get("protocol") != "https":
        return b""
    try:
        host = store.host_key(request.get("host", ""))
    except store.CredentialError:
        return b""
    with short_connection():
        token = store.token_for(user_id, host)
    if token is None:
        return b""
    log.info("ssh: handed user %s's token for %s to git", user_id, host)
    return f"username={token.username}\npassword={token.secret}\n".encode()


def helper_env(base: dict[str, str], helper: str, agent_socket: str | None) -> dict[str, str]:
    """Environment that points git at the helper socket (after any helper ``base``
    configures) and ssh at the agent socket (unless ``base`` has an agent)."""
    try:
        count = int(base.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        count = 0
    added = {
        "GIT_CONFIG_COUNT": str(count + 1),
        f"GIT_CONFIG_KEY_{count}": "credential.helper",
        f"GIT_CONFIG_VALUE_{count}": f"cache --socket {helper}",
    }
    if agent_socket and "SSH_AUTH_SOCK" not in base:
        added["SSH_AUTH_SOCK"] = agent_socket
    return added


# The IDE's sockets: one code-server per container, so fixed names.
IDE_HELPER = "ide-git.sock"
IDE_AGENT = "ide-agent.sock"


def ide_env(kinds: set[str], base: dict[str, str]) -> dict[str, str]:
    """The IDE's share of ``helper_env``, given the kinds of credential the owner keeps."""
    if not kinds:
        return {}
    agent_socket = f"{AGENT_SOCKET_DIR}/{IDE_AGENT}" if "ssh" in kinds else None
    return helper_env(base, f"{AGENT_SOCKET_DIR}/{IDE_HELPER}", agent_socket)


class SessionCredentials:
    """The two sockets of one session; ``may_use(pid)`` says whether a process may ask
    (set ``exec_id`` related checks in it once the session's command exists)."""

    def __init__(
        self,
        host_dir: Path,
        mount_dir: str,
        uid: int,
        gid: int,
        user_id: int,
        may_use: Callable[[int | None], bool],
        *,
        with_agent: bool,
        names: tuple[str, str] | None = None,
    ):
        self.user_id, self.may_use = user_id, may_use
        self.uid = uid
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.mount_dir = mount_dir
        self.listeners: list[tuple[socket.socket, Path]] = []
        tag = secrets.token_hex(8)
        helper, agent_name = names or (f"git-{tag}.sock", f"berth-agent-{tag}.sock")
        self.helper_name = helper
        self._listen(host_dir / self.helper_name, uid, gid, self._serve_helper)
        self.agent_name = None
        if with_agent:
            self.agent_name = agent_name
            self._listen(host_dir / self.agent_name, uid, gid, self._serve_agent)

    def _listen(self, path: Path, uid: int, gid: int, handler) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)  # a fixed name an earlier gateway left behind
        listener.bind(str(path))
        os.chmod(path, 0o600)
        os.chown(path, uid, gid, follow_symlinks=False)
        listener.listen(8)
        self.listeners.append((listener, path))
        threading.Thread(
            target=self._accept, args=(listener, handler), name="git-credentials", daemon=True
        ).start()

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """What the session's environment gains: git's helper after any it has, and the
        agent (unless the client forwarded its own)."""
        agent_path = f"{self.mount_dir}/{self.agent_name}" if self.agent_name else None
        return helper_env(base, f"{self.mount_dir}/{self.helper_name}", agent_path)

    def _accept(self, listener: socket.socket, handler) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed
            if not self.slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._answer, args=(conn, handler), daemon=True).start()

    def _answer(self, conn: socket.socket, handler) -> None:
        try:
            with conn, contextlib.suppress(OSError, VaultError):
                conn.settimeout(5)
                pid, uid = peer(conn)
                # The user's own uid first (cheap), then whose process it is.
                if uid != self.uid or not self.may_use(pid):
                    log.info("ssh: git credentials refused to process %s (not this session's)", pid)
                    return
                handler(conn, pid)
        finally:
            self.slots.release()

    def _serve_helper(self, conn: socket.socket, _pid: int | None) -> None:
        data = b""
        deadline = time.monotonic() + HELPER_SECONDS
        while len(data) <= MAX_REQUEST and time.monotonic() < deadline:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        else:
            return  # too much, or too slow
        conn.sendall(helper_answer(self.user_id, parse_request(data)))

    def _serve_agent(self, conn: socket.socket, pid: int | None) -> None:
        def keys():
            with short_connection():
                found = store.ssh_key(self.user_id)
            return [found] if found else []

        agent.serve(
            conn,
            keys,
            deadline=time.monotonic() + AGENT_SECONDS,
            may_sign=lambda: self.may_use(pid),
        )

    def close(self) -> None:
        for listener, path in self.listeners:
            listener.close()
            path.unlink(missing_ok=True)
