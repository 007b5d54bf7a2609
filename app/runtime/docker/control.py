"""Reaching into a workspace where its processes live: a TCP connection to its own
loopback, and ending a command with everything it started.

Where this process sees the engine's processes (Berth and Docker on one host), it does
both itself: it enters the workspace's network namespace and signals host pids. Where
it does not (the appliance, where Berth's services run beside an engine of their own, or
an engine on another machine), it asks the engine: a small control container of
Berth's own, in the engine's pid namespace with no network, runs ``nsenter ... socat``
per connection and ``ps``/``kill`` per command, each as an exec over the Engine API. The
bytes of a tunnel then travel in the exec's stream.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import docker

from app.messages import first_line
from app.runtime import ProvisionError
from app.runtime.docker import processes
from app.runtime.docker.hijack import Frames, run_collected, start_exec

log = logging.getLogger("berth.control")

CONTROL_IMAGE = "berth-control:1"
CONTROL_VERSION = "2"  # of the control container's settings: an older one is replaced
_DOCKERFILE = """\
FROM {base}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends socat procps \\
 && rm -rf /var/lib/apt/lists/*
"""
CLONE_NEWNET = 0x40000000
MODES = ("auto", "engine")
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
# Run in the control container with $1 a pid and $2 the workspace's container id, then
# socat's argv. The namespace is opened first and its process checked after, so a pid
# reused meanwhile by a process outside the workspace is refused, never entered; socat
# runs as nobody with no capabilities.
_ENTER = (
    'exec 3</proc/"$1"/ns/net || exit 97; '
    'grep -Eq "[/-]$2(\\.scope)?$" /proc/"$1"/cgroup '
    '|| { echo "process $1 is not in the workspace" >&2; exit 97; }; '
    "shift 2; exec nsenter --net=/proc/self/fd/3 -- "
    'setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"'
)
# Sends signal $1 to each pid after $2 that is, at that moment, in container $2.
_SIGNAL = (
    'sig=$1; id=$2; shift 2; for p; do grep -Eq "[/-]$id(\\.scope)?$" /proc/"$p"/cgroup '
    '2>/dev/null && kill -s "$sig" "$p" 2>/dev/null; done; true'
)


class ControlError(ProvisionError):
    """The workspace could not be reached; the message says why."""


def build_image(client: docker.DockerClient, base: str, network: str | None, on_log) -> str:
    """Build the control image (Debian with socat and procps) unless it exists."""
    try:
        return client.images.get(CONTROL_IMAGE).id
    except docker.errors.ImageNotFound:
        pass
    on_log(f"building {CONTROL_IMAGE} from {base}")
    kwargs = {"network_mode": network} if network else {}
    stream = client.api.build(
        fileobj=io.BytesIO(_DOCKERFILE.format(base=base).encode()),
        tag=CONTROL_IMAGE,
        rm=True,
        forcerm=True,
        decode=True,
        labels={"berth.managed": "true"},
        **kwargs,
    )
    for item in stream:
        if "error" in item:
            raise ControlError(f"building {CONTROL_IMAGE} failed: {first_line(item['error'])}")
    return client.images.get(CONTROL_IMAGE).id


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def connect_in_namespace(pid: int, host: str, port: int, timeout: float = 10) -> socket.socket:
    """A TCP connection opened from inside the network namespace of host process ``pid``,
    so its 127.0.0.1 is the workspace's own loopback. The socket keeps that namespace;
    the throwaway thread that entered it ends, the caller's other threads never leave
    their own."""
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


class ExecSocket:
    """The bytes of a command's stdin and stdout, as a socket: what ``sendall`` writes is
    its input, ``recv`` returns its output (Docker's frames taken apart, stderr logged),
    ``shutdown`` ends its input. Enough of a socket for select and the SSH relay."""

    def __init__(self, raw: socket.socket, about: str):
        self.raw, self.about, self.frames = raw, about, Frames()

    def fileno(self) -> int:
        return self.raw.fileno()

    def recv(self, size: int) -> bytes:
        while True:
            chunk = self.raw.recv(size)
            if not chunk:
                return b""
            out = bytearray()
            for stream, data in self.frames.feed(chunk):
                if stream == 1:
                    out += data
                else:
                    log.info("%s: %s", self.about, first_line(data.decode(errors="replace")))
            if out:
                return bytes(out)
            # Only a partial frame or stderr so far: more follows, or end of file.

    def sendall(self, data: bytes) -> None:
        self.raw.sendall(data)

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()


# Where Docker's bridge networks (and so a workspace's services) have their addresses.
_PRIVATE_NETWORKS = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def _address(host: str, port: int) -> str:
    """socat's address for a loopback destination; anything else is refused here, since
    socat reads options and other address types from the same string."""
    if type(port) is not int or not 0 < port < 65536:
        raise ControlError(f"port {port!r} is not a TCP port")
    if host == "::1":
        return f"TCP6:[::1]:{port}"
    try:
        # Loopback, or the address of another service of the workspace (the runtime
        # looked it up, on the workspace's private network); a literal IPv4 address holds
        # nothing socat would read as options.
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ControlError(f"{host!r} is not an address of the workspace") from None
    if not (address.is_loopback or any(address in net for net in _PRIVATE_NETWORKS)):
        raise ControlError(f"{host!r} is not an address of the workspace")
    return f"TCP4:{address}:{port}"


class EngineControl:
    """Connections into a workspace and the end of its commands, on this host or
    through the engine (``mode``: "auto" chooses per process, "engine" always asks the
    engine)."""

    def __init__(self, client: docker.DockerClient, instance: str, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.client, self.instance, self.mode = client, instance, mode
        self.name = f"berth-{instance}-control"
        self._lock = threading.Lock()
        self._container_id: str | None = None

    # --- where the work happens --------------------------------------------------------

    def local(self, pid: int, container_id: str) -> bool:
        """Whether host pid ``pid`` is the workspace's process as this process sees it."""
        if self.mode != "auto" or not pid or not CONTAINER_ID.fullmatch(container_id or ""):
            return False
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        return re.search(rf"[/-]{container_id}(\.scope)?$", text, re.MULTILINE) is not None

    def _control(self) -> str:
        """The control container's id, made and started when first needed (its name is
        the lock: another process of this Berth may make it at the same moment); then
        remembered, and looked up again only when an exec finds it gone (_exec)."""
        with self._lock:
            if self._container_id:
                return self._container_id
            try:
                container = self.client.containers.get(self.name)
                if container.labels.get("berth.control.version") != CONTROL_VERSION:
                    container.remove(force=True)
                    container = self._create()
            except docker.errors.NotFound:
                container = self._create()
            if container.status != "running":
                container.start()
            self._container_id = container.id
            return container.id

    def _create(self):
        try:
            self.client.images.get(CONTROL_IMAGE)
        except docker.errors.ImageNotFound:
            raise ControlError(
                f"the engine's control image {CONTROL_IMAGE} is not built yet: the worker "
                "builds it when it starts (admin page, scheduled job control-image)"
            ) from None
        try:
            return self.client.containers.create(
                CONTROL_IMAGE,
                # Waits for nothing and ends at once on docker stop.
                ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
                name=self.name,
                labels={
                    "berth.managed": "true",
                    "berth.instance": self.instance,
                    "berth.role": "control",
                    "berth.control.version": CONTROL_VERSION,
                },
                # Sees the engine's processes (to enter a workspace's network namespace and
                # signal its commands) and has no network of its own.
                pid_mode="host",
                network_mode="none",
                cap_drop=["ALL"],
                # SETUID/SETGID only to drop to nobody before socat runs.
                cap_add=["SYS_ADMIN", "SYS_PTRACE", "KILL", "SETUID", "SETGID"],
                security_opt=["no-new-privileges"],
                read_only=True,
                restart_policy={"Name": "unless-stopped"},
                mem_limit="512m",
                pids_limit=4096,
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # made by another process meanwhile
                return self.client.containers.get(self.name)
            raise

    def _exec(self, argv: list[str], **options) -> dict:
        """Create an exec in the control container; if it was removed or stopped since it
        was last used, find or make it again and retry once."""
        try:
            return self.client.api.exec_create(self._control(), argv, **options)
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409):
                raise
            with self._lock:
                self._container_id = None
            return self.client.api.exec_create(self._control(), argv, **options)

    def _run(self, argv: list[str]) -> tuple[int, str]:
        created = self._exec(argv, stdout=True, stderr=True)
        code, output = run_collected(self.client.api, created["Id"])
        return code, output.decode(errors="replace")

    # --- tunnels -----------------------------------------------------------------------

    def connect(self, container_id: str, pid: int, host: str, port: int, timeout: float = 10):
        """A connection to ``host``:``port`` as seen inside the workspace whose first
        process is ``pid``: a socket here, or an ``ExecSocket`` through the engine."""
        address = _address(host, port)  # checked on both paths
        if self.local(pid, container_id):
            return connect_in_namespace(pid, host, port, timeout)
        if not CONTAINER_ID.fullmatch(container_id):
            raise ControlError(f"{container_id!r} is not a container id")
        try:
            created = self._exec(
                [
                    "sh",
                    "-c",
                    _ENTER,
                    "sh",
                    str(pid),
                    container_id,
                    "socat",
                    "STDIO",
                    f"{address},connect-timeout={timeout:.0f}",
                ],  # fmt: skip
                stdin=True,
                stdout=True,
                stderr=True,
            )
            raw = start_exec(self.client.api, created["Id"], tty=False)
        except docker.errors.DockerException as exc:
            raise ControlError(f"the engine refused the tunnel: {first_line(exc)}") from None
        except OSError as exc:
            raise ControlError(f"the engine did not answer: {exc}") from None
        return ExecSocket(raw, f"tunnel to {host}:{port}")

    # --- ending commands ---------------------------------------------------------------

    def end(self, container_id: str, pid: int, grace_seconds: float = 2.0) -> None:
        """SIGHUP to the command ``pid`` and every process below it (as a closing terminal
        would), then SIGKILL to the command itself if it is still there."""
        if self.local(pid, container_id):
            processes.signal_all([pid, *processes.descendants(pid)], signal.SIGHUP)
            deadline = time.monotonic() + grace_seconds
            while processes.alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if processes.alive(pid):
                processes.signal_all([pid], signal.SIGKILL)
            return
        try:
            self._end_through_engine(container_id, pid, grace_seconds)
        except Exception as exc:  # noqa: BLE001  (ending is best effort; the caller goes on)
            log.warning("could not end process %s through the engine: %s", pid, exc)

    def _table(self) -> dict[int, tuple[str, int]]:
        code, output = self._run(["ps", "-e", "-o", "pid=,ppid=,stat="])
        if code != 0:
            raise ControlError(f"ps failed in the control container: {first_line(output)}")
        table = {}
        for line in output.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit():
                table[int(fields[0])] = (fields[2][:1], int(fields[1]))
        return table

    def _signal(self, name: str, container_id: str, pids: list[int]) -> None:
        self._run(["sh", "-c", _SIGNAL, "sh", name, container_id, *map(str, pids)])

    def _end_through_engine(self, container_id: str, pid: int, grace_seconds: float) -> None:
        if not CONTAINER_ID.fullmatch(container_id):
            raise ControlError(f"{container_id!r} is not a container id")
        table = self._table()
        if pid not in table:
            return
        self._signal("HUP", container_id, [pid, *processes.descendants(pid, table)])
        deadline = time.monotonic() + grace_seconds
        while True:
            state = self._table().get(pid)
            if state is None or state[0] in ("Z", "X"):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        self._signal("KILL", container_id, [pid])
