"""One SSH session channel: a login shell, a command or the sftp subsystem, run in the
workspace through a Docker exec, with the channel's bytes relayed both ways."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

from app.credentials.serve import SessionCredentials
from app.db import short_connection
from app.models import GitCredential, Workspace, stamp, utcnow
from app.readiness import Readable
from app.runtime.layout import AGENT_SOCKET_DIR
from app.ssh.relay import CHANNEL_READ, CHUNK, AgentForward, readable, send_in_parts
from app.workspaces import sharing, strangers

if TYPE_CHECKING:
    from app.ssh.gateway import Connection

log = logging.getLogger("berth.ssh")

# Client variables a session takes over (sshd's AcceptEnv): locale and terminal only,
# plus BERTH_SESSION_TYPE, which IDE integrations set to say what they are.
ENV_ALLOWED = ("LANG", "TERM", "COLORTERM", "BERTH_SESSION_TYPE")
ENV_ALLOWED_PREFIXES = ("LC_",)
MAX_ENV_VARIABLES, MAX_ENV_NAME, MAX_ENV_VALUE = 64, 256, 4096
# Exit codes 128+N that mean "killed by signal N" and are reported as such; other codes
# above 128 are more often a program's own choice (a shell after Ctrl-C returns 130), so
# they stay exit codes. The engine reports both the same way; this is the best reading.
SIGNAL_EXITS = {
    128 + s: s.name.removeprefix("SIG")
    for s in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGTERM)
}
# The image's own sftp-server, wherever the distribution put it.
SFTP_SERVER = (
    "for p in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server "
    "/usr/lib/ssh/sftp-server /usr/libexec/sftp-server /usr/lib/sftp-server; do "
    '[ -x "$p" ] && exec "$p"; done; '
    'echo "berth: this workspace has no sftp-server; install it in the image '
    '(Debian/Ubuntu: openssh-sftp-server)" >&2; exit 127'
)


@dataclass
class Pty:
    term: str
    width: int
    height: int


@dataclass
class Session:
    connection: Connection
    channel: paramiko.Channel
    pty: Pty | None = None
    env: dict = field(default_factory=dict)
    agent: bool = False
    exec_id: str | None = None
    started: bool = False
    cast: object | None = None  # a recordings.Cast while a recorded pty session runs
    resizing: bool = False  # a thread applies the latest size to the exec
    resize_lock: threading.Lock = field(default_factory=threading.Lock)

    # --- requests (called on paramiko's thread: record and return at once) -----------

    def set_env(self, name: str, value: str) -> bool:
        if not (name in ENV_ALLOWED or name.startswith(ENV_ALLOWED_PREFIXES)):
            return False
        # Bounded: each is kept until the session starts.
        if len(name) > MAX_ENV_NAME or len(value) > MAX_ENV_VALUE:
            return False
        if name not in self.env and len(self.env) >= MAX_ENV_VARIABLES:
            return False
        self.env[name] = value
        return True

    def resize(self, width: int, height: int) -> None:
        if self.pty:
            self.pty.width, self.pty.height = width, height
        if self.cast is not None:
            self.cast.resize(width, height)
        if self.exec_id and self.pty:
            # One thread at a time takes the latest size to the engine: a client sending
            # size after size holds no more threads, nor engine calls, than one.
            with self.resize_lock:
                if self.resizing:
                    return
                self.resizing = True
            threading.Thread(target=self._apply_sizes, name="ssh-resize", daemon=True).start()

    def _apply_sizes(self) -> None:
        applied = None
        while True:
            with self.resize_lock:
                size = (self.pty.height, self.pty.width)
                if size == applied:
                    self.resizing = False
                    return
            try:
                self.connection.gateway.runtime.resize_exec(self.exec_id, *size)
            except Exception:  # noqa: BLE001  (a size not taken ends no session)
                log.warning("ssh: could not resize a terminal in %s", self.connection.target)
            applied = size

    def start(self, kind: str, command: str | None = None) -> bool:
        if self.started:
            return False
        self.started = True
        thread = threading.Thread(
            target=self._run_then_forget, args=(kind, command), name=f"ssh-{kind}", daemon=True
        )
        self.connection.transport.start_after_answer(self.channel, thread.start)
        return True

    # --- the session itself (its own thread) ---------------------------------------

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, paramiko.SSHException):
            self.channel.sendall_stderr((text + "\n").encode())

    def _finish(self, code: int) -> None:
        try:
            if code in SIGNAL_EXITS:
                self._send_exit_signal(SIGNAL_EXITS[code])
            else:
                self.channel.send_exit_status(code)
            self.channel.shutdown_write()
        except (OSError, paramiko.SSHException):
            pass
        self.channel.close()

    def _send_exit_signal(self, name: str) -> None:
        # RFC 4254 6.10; paramiko only has the exit-status half.
        message = paramiko.Message()
        message.add_byte(bytes([MSG_CHANNEL_REQUEST]))
        message.add_int(self.channel.remote_chanid)
        message.add_string("exit-signal")
        message.add_boolean(False)
        message.add_string(name)
        message.add_boolean(False)  # no core dump
        message.add_string("")
        message.add_string("")
        self.channel.transport._send_user_message(message)

    def _run_then_forget(self, kind: str, command: str | None) -> None:
        try:
            self._run(kind, command)
        finally:
            self.connection.forget_session(self.channel.get_id())

    def _run(self, kind: str, command: str | None) -> None:
        conn = self.connection
        gateway = conn.gateway
        agent = credentials = None
        try:
            container_id = conn.running_container(self._say)
            account = gateway.account(container_id, conn.remote_user)
            tty = self.pty is not None and kind != "sftp"
            if kind == "shell":
                argv = [account.shell, "-l"]
            elif kind == "exec":
                argv = [account.shell, "-c", command]
            else:
                argv = ["/bin/sh", "-c", SFTP_SERVER]
            env = {
                # remoteEnv and the probed environment, as VS Code and devcontainer exec
                # give them; what SSH itself sets, and what the client sends, win.
                **conn.person_env,
                "USER": account.name,
                "LOGNAME": account.name,
                "SHELL": account.shell,
                "SSH_CONNECTION": conn.connection_line,
                "SSH_CLIENT": conn.client_line,
                **self.env,
            }
            if self.pty:
                env["TERM"] = self.pty.term or "xterm"
            if self.agent:
                agent = self._forward_agent(container_id, account)
                if agent:
                    env["SSH_AUTH_SOCK"] = f"{AGENT_SOCKET_DIR}/{agent.name}"
            if conn.shared and not conn.marked_used:
                # Before anything of theirs runs: from now on the workspace is not its
                # owner's alone (app.workspaces.strangers); unrecorded, nothing runs.
                with short_connection():
                    strangers.used_by(conn.workspace_id, conn.user, f"opened an SSH {kind}")
                conn.marked_used = True
            if kind != "sftp":
                credentials = self._credentials(container_id, account, bool(agent))
                if credentials:
                    env.update(credentials.env(env))
            if tty:  # before the command runs: no unrecorded start
                self.cast = conn.start_recording(self.pty, kind, command)
            exec_id, sock = gateway.runtime.open_exec(
                container_id, argv, user=conn.remote_user, env=env, workdir=conn.folder, tty=tty
            )
        except SessionRefused as exc:
            self._say(f"berth: {exc}")
            self._finish(1)
            self._drop_recording(conn)
            return
        except Exception as exc:  # the session must end with a message, not hang
            log.exception("ssh: session into %s failed to start", conn.target)
            self._say(f"berth: could not start the session: {exc}")
            self._finish(1)
            self._drop_recording(conn)
            for opened in (agent, credentials):
                if opened:
                    opened.close()
            return
        self.exec_id = exec_id
        started = utcnow()
        about = {"kind": kind, "command": command, "pty": self.pty is not None}
        # The command runs already: its start is written down beside it, and its first
        # bytes need not wait for the database. The end is written after the start.
        opening = threading.Thread(
            target=self._record_start, args=(kind, about), name="ssh-record", daemon=True
        )
        opening.start()
        code, ended = None, False
        try:
            try:
                if self.pty:
                    gateway.runtime.resize_exec(exec_id, self.pty.height, self.pty.width)
                ended = self._pump(sock, tty)
            finally:
                sock.close()
                for opened in (agent, credentials):
                    if opened:
                        opened.close()
            if ended:
                code = gateway.runtime.exec_exit_code(exec_id)
                self._finish(255 if code is None else code)
            else:
                # The client went away while the command ran: end what it started.
                gateway.runtime.end_exec(exec_id)
        except Exception:  # the session ends, and is written down, whatever broke
            log.exception("ssh: session into %s ended in an error", conn.target)
        finally:
            self.channel.close()
            opening.join()
            conn.record_activity(f"{kind} session closed", sessions=-1)
        if self.cast is not None:
            about["recording"] = conn.finish_recording(self.cast, code)
        conn.audit(
            "ssh.session.end",
            **about,
            started_at=stamp(started),
            ended_at=stamp(utcnow()),
            exit_code=code,
            client_left=not ended,
        )

    def _record_start(self, kind: str, about: dict) -> None:
        try:
            self.connection.audit("ssh.session.start", **about)
        except Exception:  # the session goes on; the failure is in the log
            log.exception("ssh: could not record the start of a session")
        self.connection.record_activity(f"{kind} session opened", sessions=1)

    def _drop_recording(self, conn) -> None:
        if self.cast is not None:
            conn.finish_recording(self.cast, None)
            self.cast = None

    def _forward_agent(self, container_id: str, account) -> AgentForward | None:
        conn = self.connection
        refusal = agent_refusal(conn.user, conn.workspace_id)
        if refusal:
            self._say(f"berth: agent forwarding is off here: {refusal}")
            conn.audit("ssh.agent", outcome="denied", reason=refusal)
            return None
        runtime = self.connection.gateway.runtime
        host_dir = runtime.agent_socket_dir(self.connection.workspace_id)
        found = runtime.poll(container_id)
        mounted = found is not None and found.agent_sockets
        if host_dir is None or not mounted or not host_dir.is_dir():
            self._say(
                "berth: agent forwarding is not available in this workspace "
                "(created before it was supported; rebuild it to enable)"
            )
            return None
        return AgentForward(
            self.connection.transport,
            host_dir,
            account.uid,
            account.gid,
            # Checked again at each use: a share added later closes the way to the agent.
            allowed=lambda: agent_refusal(conn.user, conn.workspace_id) is None,
        )

    def _credentials(self, container_id: str, account, forwarded: bool):
        """The owner's git credentials for this session, when they keep any and the
        workspace is theirs alone (as for a forwarded agent); None otherwise."""
        conn = self.connection
        runtime = conn.gateway.runtime
        with short_connection():
            kinds = {
                row.kind
                for row in GitCredential.select(GitCredential.kind).where(
                    GitCredential.user == conn.user.id
                )
            }
            if not kinds:
                return None  # most sessions: one query
            ws = Workspace.get_or_none(Workspace.id == conn.workspace_id)
            sandbox = ws is not None and ws.template is not None and ws.template.profile == "agent"
        if not kinds or sandbox:
            return None
        refused = credential_refusal(conn.user, conn.workspace_id)
        if refused is not None:
            if self.pty is not None and ws is not None and ws.owner_id == conn.user.id:
                self._say(f"berth: your git credentials are not offered here: {refused}")
            return None
        host_dir = runtime.agent_socket_dir(conn.workspace_id)
        found = runtime.poll(container_id)
        mounted = found is not None and found.agent_sockets
        if host_dir is None or not mounted or not host_dir.is_dir():
            return None

        def may_use(pid: int | None) -> bool:
            # Checked at each use: only this session's processes, and a share added
            # later closes the way.
            return (
                self.exec_id is not None
                and runtime.exec_owns(self.exec_id, pid)
                and credential_refusal(conn.user, conn.workspace_id) is None
            )

        return SessionCredentials(
            host_dir,
            AGENT_SOCKET_DIR,
            account.uid,
            account.gid,
            conn.user.id,
            may_use,
            with_agent="ssh" in kinds and not forwarded,
        )

    def _pump(self, sock: socket.socket, tty: bool) -> bool:
        """Relay until the command ends (True) or the client goes away (False)."""
        channel = self.channel
        frames = None if tty else self.connection.gateway.runtime.output_splitter()
        with Readable(sock, channel) as waiting:
            return self._pump_with(waiting, sock, tty, frames)

    def _pump_with(self, waiting: Readable, sock: socket.socket, tty: bool, frames) -> bool:
        channel = self.channel
        while True:
            ready = waiting.wait(1.0)
            if channel.closed:
                return False
            data = b""
            try:
                if channel in ready:
                    data = channel.recv(CHANNEL_READ)
                    if data:
                        # What the command says meanwhile is passed on between the parts.
                        if not send_in_parts(sock, data, lambda: self._output(sock, frames)):
                            return True
                        if self.cast is not None:
                            self.cast.event("i", data)
                        self.connection.record_activity("input")
                    else:
                        waiting.drop(channel)
                        if not tty:
                            sock.shutdown(socket.SHUT_WR)  # end of input, as `cat > f` needs
                # Only a write in parts may have taken what the command said: look again then.
                drained = len(data) > CHUNK and not readable(sock)
                if sock in ready and not drained and not self._output(sock, frames):
                    return True
            except (OSError, paramiko.SSHException):  # either side went away
                return False

    def _output(self, sock: socket.socket, frames) -> bool:
        """Pass on what the command said; False once it has ended."""
        chunk = sock.recv(CHUNK)
        if not chunk:
            return False
        if frames is None:
            self.channel.sendall(chunk)
            if self.cast is not None:
                self.cast.event("o", chunk)
        else:
            for stream, data in frames(chunk):
                if stream == 2:
                    self.channel.sendall_stderr(data)
                else:
                    self.channel.sendall(data)
        return True


def agent_refusal(user, workspace_id: int) -> str | None:
    """Why a forwarded SSH agent may not reach this workspace, or None. Everyone who may
    use a workspace runs as its one user and could use any agent socket in it, so an
    agent goes only into a workspace its owner alone uses."""
    with short_connection():
        ws = Workspace.get_or_none(Workspace.id == workspace_id)
        if ws is None or ws.owner_id != user.id:
            return "your keys would be usable by the owner of this workspace"
        if sharing.shares_of(ws):
            return "this workspace is shared, and those it is shared with could use your keys"
    return None


def credential_refusal(user, workspace_id: int) -> str | None:
    """Why the owner's git credentials may not be offered in this workspace, or None:
    as for a forwarded agent, and besides once anyone else has used it."""
    refused = agent_refusal(user, workspace_id)
    if refused is not None:
        return refused
    with short_connection():
        return strangers.reason(workspace_id)


class SessionRefused(Exception):
    """The session cannot start; the message is shown to the client on stderr."""
