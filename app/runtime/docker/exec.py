"""Commands in a workspace through the engine's exec API: streamed, collected, resized
and ended; small files written and the keep-alive mark read inside it, as its own user;
and TCP connections opened on its own loopback."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import docker

from app.readiness import Readable
from app.runtime import ExecEnd, ExecOutput, ProvisionError
from app.runtime.docker import processes
from app.runtime.docker.control import EngineControl
from app.runtime.docker.hijack import Frames, exit_code, start_exec
from app.runtime.layout import KEEPALIVE_MARK

log = logging.getLogger("berth.runtime")

DETACH_KEYS = "ctrl-^,ctrl-@,ctrl-^,ctrl-@"
INPUT_CHUNK = 256 * 1024
# Prints the mark's time (seconds since the epoch) and its first 200 bytes, only when it
# is a regular file; whatever the workspace left there is read by its own user, inside it.
_READ_MARK = (
    f'f={KEEPALIVE_MARK}; [ -f "$f" ] && [ ! -h "$f" ] || exit 3; '
    'date -r "$f" +%s && head -c 200 "$f"'
)
_WRITE_FILE = 'umask 077 && cat > "$1.partial" && mv -f "$1.partial" "$1"'


class Exec:
    def __init__(self, client: docker.DockerClient, control: EngineControl):
        self.client = client
        # Tunnels into a workspace and the end of its commands, here or through the engine.
        self.control = control
        self._first_pids: dict[str, int] = {}  # container id -> its first process (tunnels)

    def open_exec(
        self,
        container_id: str,
        argv: list[str],
        *,
        user: str = "",
        env: dict | None = None,
        workdir: str | None = None,
        tty: bool = False,
        stdin: bool = True,
    ):
        """Start a command and return (exec id, its raw socket). Without a tty the socket
        carries Docker's multiplexed frames (read them with ``Frames``); with one, raw
        bytes. Shutting the socket's write side is end of input for the command."""
        created = self.client.api.exec_create(
            container_id,
            argv,
            user=user,
            workdir=workdir,
            stdin=stdin,
            tty=tty,
            environment=[f"{k}={v}" for k, v in (env or {}).items()] or None,
            # A tty exec holds back Docker's detach keys (Ctrl-P by default) and ends the
            # session on them; this sequence is never typed by accident.
            detach_keys=DETACH_KEYS if tty else None,
        )
        return created["Id"], start_exec(self.client.api, created["Id"], tty)

    def exec_stream(
        self,
        container_id: str,
        argv: list[str],
        *,
        timeout: float | None = None,
        stdin: bytes | None = None,
        **options,
    ) -> Iterator[tuple[str, bytes] | ExecEnd]:
        """Run a command and yield ("stdout" | "stderr", bytes) as its output comes, then
        one ``ExecEnd``. Closing the generator early ends the command."""
        exec_id, raw = self.open_exec(container_id, argv, stdin=stdin is not None, **options)
        finished = False
        try:
            deadline = time.monotonic() + timeout if timeout else None
            timed_out = stdin is not None and not self._send_input(exec_id, raw, stdin, deadline)
            frames = Frames()
            with Readable(raw) as waiting:
                while not timed_out:
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not waiting.wait(wait):
                        timed_out = True
                        break
                    try:
                        chunk = raw.recv(65536)
                    except ConnectionResetError:  # it ended while input was still coming
                        break
                    if not chunk:
                        break
                    for stream, data in frames.feed(chunk):
                        yield ("stdout" if stream == 1 else "stderr", data)
            raw.close()
            if timed_out:
                self.end_exec(exec_id, grace_seconds=0)
            code = self.exec_exit_code(exec_id)
            finished = True
            yield ExecEnd(-1 if timed_out or code is None else code, timed_out)
        finally:
            if not finished:  # the reader went away: end what it started
                raw.close()
                self.end_exec(exec_id, grace_seconds=0)

    def _send_input(self, exec_id: str, raw, data: bytes, deadline: float | None) -> bool:
        """Send a command's whole input, then end it (half-close); False when the deadline
        passed first: a command that never reads its input must not hold the caller for
        ever. The engine keeps taking nothing from one that exited before reading all of
        it, without closing: while sending stalls, ask whether it still runs."""
        left = memoryview(data)
        try:
            while left:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                raw.settimeout(0.5)
                try:
                    left = left[raw.send(left[:INPUT_CHUNK]) :]
                except TimeoutError:
                    if not self.client.api.exec_inspect(exec_id).get("Running"):
                        break  # it ended; its output and exit code say how
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # it ended and the engine closed: the same
        finally:
            raw.settimeout(None)
        return True

    def exec(
        self, container_id: str, argv: list[str], max_output: int | None = None, **kwargs
    ) -> ExecOutput:
        """Run a command, collecting stdout and stderr separately, within ``timeout`` seconds
        (the keyword arguments of ``exec_stream``). With ``max_output``, a command that
        prints more bytes than that is ended and reported as timed out."""
        out, err, end = bytearray(), bytearray(), None
        stream = self.exec_stream(container_id, argv, **kwargs)
        for item in stream:
            if isinstance(item, ExecEnd):
                end = item
            else:
                (out if item[0] == "stdout" else err).extend(item[1])
                if max_output is not None and len(out) + len(err) > max_output:
                    stream.close()  # ends the command
                    end = ExecEnd(-1, True)
                    break
        return ExecOutput(
            end.exit_code, out.decode(errors="replace"), err.decode(errors="replace"), end.timed_out
        )

    def read_keepalive(self, container_id: str, user: str) -> tuple[float, str] | None:
        """The keep-alive mark berth-keepalive left in the workspace: (its time as seconds
        since the epoch, its first line), or None when there is none. Read inside the
        workspace as its own user, with a deadline and a bound on what comes back: what
        the workspace put there is never opened by Berth itself."""
        try:
            done = self.exec(
                container_id, ["/bin/sh", "-c", _READ_MARK], user=user, timeout=5, max_output=512
            )
        except docker.errors.APIError:
            return None
        first, _, rest = done.stdout.partition("\n")
        # Seconds since the epoch, as date prints them: a workspace cannot hand Berth a
        # number too large for a date.
        digits = first.strip()
        if done.exit_code != 0 or not (digits.isascii() and digits.isdigit()) or len(digits) > 11:
            return None
        detail = rest.strip().splitlines()
        return float(first.strip()), (detail[0] if detail else "")

    def write_file(self, container_id: str, path: str, content: bytes, user: str) -> None:
        """Write a small file inside the workspace as ``user`` (mode 0600, replaced whole),
        through the engine: no host path is involved."""
        done = self.exec(
            container_id,
            ["/bin/sh", "-c", _WRITE_FILE, "sh", path],
            user=user,
            stdin=content,
            timeout=15,
            max_output=4096,
        )
        if done.exit_code != 0:
            raise ProvisionError(f"could not write {path} in the workspace: {done.stderr.strip()}")

    def exec_exit_code(self, exec_id: str, wait_seconds: float = 5.0) -> int | None:
        """The exit code once the command has ended (None: the engine has none)."""
        return exit_code(self.client.api, exec_id, wait_seconds)

    def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        # Resizing races the exec's start; the Docker CLI retries the same way.
        for attempt in range(10):
            try:
                self.client.api.exec_resize(exec_id, height=height, width=width)
                return
            except docker.errors.APIError:
                time.sleep(0.01 * (attempt + 1))

    def end_exec(self, exec_id: str, grace_seconds: float = 2.0) -> None:
        """End a command and what it started: SIGHUP to its process tree (as a closing
        terminal would), then SIGKILL to the command itself if it is still there.
        Processes that ignore SIGHUP or left the tree (daemons) keep running. The Engine
        API cannot signal an exec: its pid is signalled here or through the engine."""
        try:
            state = self.client.api.exec_inspect(exec_id)
        except docker.errors.APIError as exc:  # best effort: the caller goes on
            log.warning("could not look up exec %s to end it: %s", exec_id[:12], exc)
            return
        if state.get("Pid") and state.get("Running"):
            self.control.end(state.get("ContainerID", ""), state["Pid"], grace_seconds)

    def exec_owns(self, exec_id: str, pid: int | None) -> bool:
        """Whether ``pid`` (as this host sees it) is the exec's command or runs below it:
        a process another exec started, even in the same container and as the same
        user, is not."""
        if not pid:
            return False
        try:
            state = self.client.api.exec_inspect(exec_id)
        except docker.errors.APIError:
            return False
        root = state.get("Pid") if state.get("Running") else None
        if not root:
            return False
        for _ in range(256):  # deeper trees than this are not a session's
            if pid == root:
                return True
            fields = processes.stat_fields(pid)
            if fields is None or int(fields[1]) <= 1:
                return False
            pid = int(fields[1])
        return False

    @staticmethod
    def process_below(pid: int | None, inner_pid: int, start: str) -> bool:
        """Whether ``pid`` (as this host sees it) is, or runs below, the process a
        container knows as ``inner_pid`` that started at ``start`` (clock ticks since
        boot, /proc's field 22): the walk up stays inside the container (a process with
        a pid in one namespace only is the host's, and ends it)."""
        for _ in range(256):
            if not pid or pid <= 1:
                return False
            spaces, fields = processes.namespace_pids(pid), processes.stat_fields(pid)
            if len(spaces) < 2 or fields is None:
                return False
            if spaces[-1] == inner_pid and fields[19] == start:
                return True
            pid = int(fields[1])
        return False

    def open_tunnel(self, container_id: str, host: str, port: int):
        """A connection to ``host``:``port`` on the running workspace's own loopback (a
        socket, or a socket-like stream through the engine)."""
        # IDEs open a tunnel per request: a first process this host sees in the
        # container's own cgroup is still it, with no engine call (control.local).
        pid = self._first_pids.get(container_id)
        if pid is None or not self.control.local(pid, container_id):
            pid = self.container_pid(container_id)
            if not pid:
                raise ProvisionError("the workspace is not running")
            if len(self._first_pids) >= 1024:
                self._first_pids.clear()
            self._first_pids[container_id] = pid
        return self.control.connect(container_id, pid, host, port)

    def container_pid(self, container_id: str) -> int | None:
        """The host pid of the container's first process (its namespaces), if running."""
        state = self.client.api.inspect_container(container_id).get("State") or {}
        return state.get("Pid") if state.get("Running") else None

    def run(self, container_id: str, argv: list[str], *, on_output=None, **options):
        """Run a command to its end (no tty, no input); hand each line of its output, as
        it comes, to ``on_output``; return (exit code, all its output). Options: user,
        env, workdir."""
        chunks: list[bytes] = []
        pending = b""
        code = -1
        for item in self.exec_stream(container_id, argv, **options):
            if isinstance(item, ExecEnd):
                code = item.exit_code
                continue
            chunks.append(item[1])
            if on_output:
                pending += item[1]
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_output(line.decode(errors="replace"))
        if on_output and pending:
            on_output(pending.decode(errors="replace"))
        return code, b"".join(chunks).decode(errors="replace")
