"""The runtime: where workspaces run, behind one small interface.

Every other package reaches the container engine only through a ``Runtime``, and only
with the plain values below: never an engine's own objects. ``app.runtime.docker`` is the
one implementation today; docs/architecture.md says where another would go, and
tests/runtime/ holds the contract any runtime must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from app.devcontainer.run import RunSpec

Log = Callable[[str], None]


class ProvisionError(Exception):
    """The runtime refused something; the message says what and why."""


class NoSuchService(ProvisionError):
    """A tunnel asked for a name that is not a running service of the workspace."""


@dataclass(frozen=True)
class WorkspaceRef:
    """Which workspace, of which Berth instance on the engine."""

    instance: str
    id: int
    owner: str
    name: str


@dataclass(frozen=True)
class Limits:
    cpus: float
    memory_mb: int
    pids: int


@dataclass(frozen=True)
class Instance:
    """A workspace's running unit (a container), as the runtime last saw it."""

    id: str
    name: str
    workspace_id: int
    status: str  # created running paused restarting exited dead
    started_at: str | None  # the engine's own text, compared verbatim (never parsed)
    exit_code: int | None
    restart_count: int
    remote_user: str
    folder: str | None
    # Made by an older Berth in a way that must not be kept (recreated on start).
    outdated: bool = False
    agent_sockets: bool = False  # the forwarded-agent folder is mounted

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class Resource:
    """Something the runtime holds for this instance: for reconcile's inventory."""

    kind: str  # instance network volume
    id: str
    name: str
    workspace_id: int  # 0: the instance's own (egress, build, control)
    role: str
    owner: str | None = None  # None: a network made ahead, before its workspace was


@dataclass(frozen=True)
class Placement:
    """What the web tier and the SSH gateway need to reach a started workspace, recorded
    by the worker so they never look it up in the engine."""

    instance_id: str
    address: str | None  # on the workspace's own network
    host: str  # the runtime host it runs on
    remote_user: str
    folder: str | None
    started_at: str | None


@dataclass
class ExecEnd:
    exit_code: int
    timed_out: bool


@dataclass
class ExecOutput:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    user: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    cpu_ns: int
    memory_bytes: int
    memory_limit: int
    pids: int


@runtime_checkable
class Runtime(Protocol):
    """Where workspaces run. Methods that take an ``instance_id`` act on what ``create``
    returned; all of them raise ProvisionError with a reason a person can act on."""

    instance: str  # this Berth's id on the engine (labels, names)
    tools: bool  # whether the IDE bundle is mounted into new workspaces

    # --- lifecycle --------------------------------------------------------------------
    def find(self, workspace_id: int) -> Instance | None: ...
    # Options: agent (a sandbox: stricter), owner (uid, gid of the workspace user),
    # egress_port (on the egress network, its proxy there), extra_env.
    def create(
        self, ws: WorkspaceRef, spec: RunSpec, limits: Limits, home: str, **options
    ) -> Instance: ...
    def start(self, instance_id: str) -> Instance: ...
    def stop(self, instance_id: str, grace_seconds: int = 10) -> None: ...
    def discard(self, instance_id: str) -> None: ...
    def poll(self, instance_id: str) -> Instance | None: ...
    def adopt(self, instance_id: str) -> dict: ...
    def placement(self, instance_id: str) -> Placement: ...
    def remove_workspace(self, workspace_id: int, keep_volumes: bool = False) -> None: ...
    def inventory(self) -> tuple[list[Instance], list[Resource]]: ...
    def remove(self, resource: Resource) -> None: ...
    def usage(self, instance_id: str) -> Usage: ...
    def owner_on_egress(self, address: str) -> int | None: ...

    # --- exec, files, tunnels -----------------------------------------------------------
    # Every command takes user, env and workdir; exec_stream and exec also timeout and
    # stdin (bytes); open_exec tty and stdin (whether to keep it open), and returns
    # (exec id, a socket: raw with a tty, else split with output_splitter).
    def exec_stream(
        self, instance_id: str, argv: list[str], **options
    ) -> Iterator[tuple[str, bytes] | ExecEnd]: ...
    def exec(
        self, instance_id: str, argv: list[str], max_output: int | None = None, **options
    ) -> ExecOutput: ...
    def open_exec(self, instance_id: str, argv: list[str], **options): ...
    def output_splitter(self) -> Callable[[bytes], list[tuple[int, bytes]]]: ...
    def resize_exec(self, exec_id: str, height: int, width: int) -> None: ...
    def exec_exit_code(self, exec_id: str, wait_seconds: float = 5.0) -> int | None: ...
    def end_exec(self, exec_id: str, grace_seconds: float = 2.0) -> None: ...
    def exec_owns(self, exec_id: str, pid: int | None) -> bool: ...
    def process_below(self, pid: int | None, inner_pid: int, start: str) -> bool: ...
    def write_file(self, instance_id: str, path: str, content: bytes, user: str) -> None: ...
    def read_keepalive(self, instance_id: str, user: str) -> tuple[float, str] | None: ...
    def open_tunnel(self, instance_id: str, host: str, port: int): ...
    def run(self, instance_id: str, argv: list[str], **kwargs) -> tuple[int, str]: ...
    def facts(self, instance_id: str) -> dict: ...
    def agent_socket_dir(self, workspace_id: int) -> Path | None: ...

    # --- volumes ------------------------------------------------------------------------
    def volume_name(self, ws: WorkspaceRef, role: str) -> str: ...
    def volumes(self, workspace_id: int) -> list[Resource]: ...
    def seed_workspace_volume(
        self, ws: WorkspaceRef, instance_id: str, uid: int, gid: int, source_dir: str | None = None
    ) -> None: ...
    def discard_volume(self, ws: WorkspaceRef, role: str) -> None: ...
    def export_volume(self, ws: WorkspaceRef, role: str, image: str, destination: Path) -> None: ...
    def import_volume(self, ws: WorkspaceRef, role: str, image: str, source: Path) -> None: ...

    # --- images (the devcontainer engine builds through these) --------------------------
    def image(self, ref: str) -> ImageInfo | None: ...
    def pull(self, ref: str) -> None: ...
    def build_image(self, what: str, on_log: Log, **options) -> str: ...
    def discard_layers(self, layers: list[str]) -> None: ...
    def read_image_file(self, image: str, path: str) -> bytes | None: ...
    def context_files(self, root: Path, exclude: list[str]) -> list[str]: ...
    def remove_image_if_unused(self, image: str, protected: set[str]) -> bool: ...

    # --- the instance's shared pieces ----------------------------------------------------
    def build_network(self) -> str: ...
    # Networks for the workspaces with these ids, made before they are (names of those made).
    def make_networks_ahead(self, workspace_ids, keep_free: int = 8) -> list[str]: ...
    def egress_gateway(self, create: bool = True) -> str | None: ...
    def ensure_isolation_rules(self, egress_port: int | None = None) -> str: ...
    def ensure_base_image(self, on_log: Log = ...) -> str: ...
    def ensure_control_image(self, on_log: Log = ...) -> str: ...  # what it is, for the log
    def ensure_tools(self, on_log: Log, engine_dir: str = "", **options) -> None: ...
    def tools_ready(self) -> bool: ...
    def export_tools(self, out: BinaryIO) -> None: ...
    def import_tools(self, path: Path, on_log: Log, engine_dir: str = "") -> bool: ...
    def engine_info(self) -> tuple[dict, dict]: ...
    def close(self) -> None: ...


def wait_for_engine(settings, say: Log, stop: Callable[[], bool] = lambda: False) -> bool:
    """Return once the runtime's engine answers (True), or when ``stop()`` says so
    (False), saying once (then every minute) why it waits and how to start it."""
    from app.runtime.docker import engine

    return engine.wait_for(settings.docker_host, say, stop=stop)


def describe_failure(exc: BaseException, settings) -> str | None:
    """One line for a failure to reach the engine while it does not answer (how to
    start it), or None for anything else."""
    from app.runtime.docker import engine

    return engine.describe_failure(exc, settings.docker_host)


def connect(settings, timeout: int = 60, **options) -> Runtime:
    """The runtime ``settings`` choose, for this instance (Docker is the only one yet)."""
    from app.runtime.docker.runtime import connect as connect_to_docker

    return connect_to_docker(settings, timeout=timeout, **options)
