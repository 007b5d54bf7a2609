"""The Docker provisioner: volumes, networks, hardened containers, exec, stats.

Everything it creates carries ``berth.managed=true``, ``berth.workspace=<id>`` and
``berth.owner=<user>``, so reconciliation can find it and deletion can leave nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import ipaddress
import logging
import os
import posixpath
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.types import Mount

from app.devcontainer.policy import DEFAULT_CAPABILITIES
from app.devcontainer.run import RunSpec
from app.provisioner import seccomp, tools
from app.provisioner.control import EngineControl
from app.readiness import Readable

log = logging.getLogger("berth.provisioner")

LABEL_MANAGED = "berth.managed"
LABEL_INSTANCE = "berth.instance"
LABEL_WORKSPACE = "berth.workspace"
LABEL_OWNER = "berth.owner"
LABEL_ROLE = "berth.role"
LABEL_USER = "berth.remote_user"
LABEL_FOLDER = "berth.workspace_folder"
BRIDGE_PREFIX = "berth"  # bridge interfaces are berth<id>, which the firewall rule matches
WORKSPACE_CAPABILITIES = list(DEFAULT_CAPABILITIES)
# Agents have no sudo, so no audit messages to send either.
AGENT_CAPABILITIES = [c for c in DEFAULT_CAPABILITIES if c != "AUDIT_WRITE"]
DETACH_KEYS = "ctrl-^,ctrl-@,ctrl-^,ctrl-@"
# Where the SSH gateway puts forwarded-agent sockets inside a workspace (a read-only bind
# of a host folder: the workspace can use the sockets, not replace them).
AGENT_SOCKET_DIR = "/run/berth-agent"
# The workspace's own small tmpfs (its keep-alive mark, a sandbox's token): Berth reads and
# writes it only through the engine (exec), never through a host path.
KEEPALIVE_DIR = "/run/berth"
KEEPALIVE_MARK = f"{KEEPALIVE_DIR}/keepalive"
KEEPALIVE_SCRIPT = Path(__file__).with_name("berth-keepalive")
KEEPALIVE_BIN = "/usr/local/bin/berth-keepalive"
# Prints the mark's time (seconds since the epoch) and its first 200 bytes, only when it
# is a regular file; whatever the workspace left there is read by its own user, inside it.
_READ_MARK = (
    f'f={KEEPALIVE_MARK}; [ -f "$f" ] && [ ! -h "$f" ] || exit 3; '
    'date -r "$f" +%s && head -c 200 "$f"'
)
_WRITE_FILE = 'umask 077 && cat > "$1.partial" && mv -f "$1.partial" "$1"'
# The engine brings a running workspace back after it restarts (a host reboot, an engine
# upgrade); one Berth stopped stays stopped. The worker then sets it up again (the IDE, a
# sandbox's token, postStartCommand): see started_outside_berth.
RESTART_POLICY = {"Name": "unless-stopped"}


class ProvisionError(Exception):
    """Docker refused something; the message says what and why."""


@dataclass(frozen=True)
class Limits:
    cpus: float
    memory_mb: int
    pids: int


@dataclass(frozen=True)
class WorkspaceRef:
    instance: str
    id: int
    owner: str
    name: str

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_INSTANCE: self.instance,
            LABEL_WORKSPACE: str(self.id),
            LABEL_OWNER: self.owner,
        }

    @property
    def container_name(self) -> str:
        return f"berth-{self.instance}-ws-{self.id}"

    @property
    def network_name(self) -> str:
        return self.container_name

    @property
    def bridge_name(self) -> str:
        # Interface names have at most 15 characters: berth + 4 hex + up to 6 digits.
        return f"{BRIDGE_PREFIX}{self.instance}{self.id}"[:15]

    def volume_name(self, role: str) -> str:
        return f"berth-{self.instance}-ws-{self.id}-{role}"


class Frames:
    """Splits Docker's multiplexed exec stream (8-byte headers: stream, size) into
    (stream, bytes) pairs; stream 1 is stdout, 2 is stderr."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += chunk
        frames, offset = [], 0
        while len(buffer) - offset >= 8:
            size = int.from_bytes(buffer[offset + 4 : offset + 8], "big")
            end = offset + 8 + size
            if len(buffer) < end:
                break
            frames.append((buffer[offset], bytes(buffer[offset + 8 : end])))
            offset = end
        del buffer[:offset]
        return frames


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


class Provisioner:
    """The one place that changes Docker objects for workspaces."""

    def __init__(
        self,
        client: docker.DockerClient,
        instance: str,
        subnet_pool: str = "10.231.0.0/16",
        subnet_prefix: int = 24,
        agent_socket_root: Path | None = None,
        helper_dir: Path | None = None,
        tools: bool = False,
        control: str = "auto",
    ):
        self.client = client
        # Tunnels into a workspace and the end of its commands, here or through the engine.
        self.control = EngineControl(client, instance, control)
        self._first_pids: dict[str, int] = {}  # container id -> its first process (tunnels)
        # Mount the tools bundle (code-server) read-only into new workspace containers.
        self.tools = tools
        # Host folder of Berth's own where berth-keepalive is kept, mounted read-only into
        # every workspace; None leaves the script out.
        self.helper_dir = helper_dir
        self.instance = instance
        # Host folder with one sub-folder per workspace for forwarded SSH agent sockets;
        # None leaves agent forwarding out (the folder must be on the engine's host).
        self.agent_socket_root = agent_socket_root
        self.pool = ipaddress.ip_network(subnet_pool)
        self.prefix = subnet_prefix
        self._network_lock = threading.Lock()

    # --- networks -------------------------------------------------------------------

    def _used_subnets(self) -> set:
        used = set()
        for network in self.client.networks.list():
            for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                if config.get("Subnet"):
                    used.add(ipaddress.ip_network(config["Subnet"], strict=False))
        return used

    def ensure_network(self, ws: WorkspaceRef):
        """The workspace's own bridge network, on a subnet from Berth's pool."""
        return self._bridge(
            ws.network_name,
            ws.bridge_name,
            {**ws.labels, LABEL_ROLE: "network"},
            internal=False,
        )

    def ensure_egress_network(self):
        """The network of workspaces whose egress Berth controls: internal (no route out),
        no traffic between its containers, and only the gateway's address reachable,
        where Berth's egress proxy and dead DNS listen (app.egress)."""
        return self._bridge(
            self.egress_network_name,
            f"{BRIDGE_PREFIX}{self.instance}eg",
            {LABEL_MANAGED: "true", LABEL_INSTANCE: self.instance, LABEL_ROLE: "egress"},
            internal=True,
            icc=False,  # sandboxes sharing the egress network must not reach each other
        )

    def ensure_build_network(self):
        """The network image builds run their RUN steps on: a bridge named like the
        workspaces' (berth*), so the same INPUT rule keeps builds off the host's ports,
        and with no traffic between the builds on it."""
        return self._bridge(
            f"berth-{self.instance}-build",
            f"{BRIDGE_PREFIX}{self.instance}bd",
            {LABEL_MANAGED: "true", LABEL_INSTANCE: self.instance, LABEL_ROLE: "build"},
            internal=False,
            icc=False,
        )

    @property
    def egress_network_name(self) -> str:
        return f"berth-{self.instance}-egress"

    def egress_gateway(self) -> str:
        network = self.ensure_egress_network()
        network.reload()
        return network.attrs["IPAM"]["Config"][0]["Gateway"]

    def _bridge(self, name: str, bridge: str, labels: dict, internal: bool, icc: bool = True):
        with self._network_lock:
            existing = self.client.networks.list(names=[name])
            if existing:
                return existing[0]
            used = self._used_subnets()
            for subnet in self.pool.subnets(new_prefix=self.prefix):
                if any(subnet.overlaps(u) for u in used):
                    continue
                ipam = docker.types.IPAMConfig(
                    pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))]
                )
                try:
                    return self.client.networks.create(
                        name,
                        check_duplicate=True,  # the worker and the egress gateway may race
                        driver="bridge",
                        internal=internal,
                        ipam=ipam,
                        labels=labels,
                        options={
                            "com.docker.network.bridge.name": bridge,
                            "com.docker.network.bridge.enable_icc": "true" if icc else "false",
                        },
                    )
                except docker.errors.APIError as exc:
                    # Another process (the egress gateway, another Berth on the engine)
                    # made this network, or took this subnet, a moment ago; or is making
                    # it right now (its bridge is there before the network is listed).
                    making = "same bridge name" in str(exc.explanation or exc)
                    for _ in range(50 if making else 1):
                        existing = self.client.networks.list(names=[name])
                        if existing:
                            return existing[0]
                        time.sleep(0.1)
                    if "overlaps" in str(exc.explanation or exc):
                        used.add(subnet)
                        continue
                    raise
        raise ProvisionError(
            f"the subnet pool {self.pool} has no free /{self.prefix} left; delete unused "
            "workspaces or set BERTH_SUBNET_POOL to a larger range"
        )

    def _keepalive_script(self) -> Path:
        """berth-keepalive in Berth's helper folder, so the bind source is on the engine's
        host also where the engine is not this machine's (the appliance shares the data
        dir with it, not Berth's installed package)."""
        target = self.helper_dir / KEEPALIVE_SCRIPT.name
        script = KEEPALIVE_SCRIPT.read_bytes()
        if not target.exists() or target.read_bytes() != script:
            partial = target.with_suffix(f".{os.getpid()}.partial")
            partial.write_bytes(script)
            partial.chmod(0o755)
            partial.replace(target)
        return target

    # --- volumes --------------------------------------------------------------------

    def ensure_volume(self, ws: WorkspaceRef, role: str):
        """The workspace's volume ``role``, made by Berth for it (one with that name made
        by anything else is refused, never mounted)."""
        name = ws.volume_name(role)
        try:
            volume = self.client.volumes.get(name)
        except docker.errors.NotFound:
            return self.client.volumes.create(name, labels={**ws.labels, LABEL_ROLE: role})
        labels = volume.attrs.get("Labels") or {}
        if any(labels.get(key) != value for key, value in ws.labels.items()):
            raise ProvisionError(
                f"the volume {name} exists but was not made by Berth for {ws.name}"
            )
        return volume

    def _own_mounts(self, ws: WorkspaceRef, mounts: list[dict], reserved: set[str]) -> list:
        """The config's mounts (none at or under ``reserved``, Berth's own mount points),
        each volume replaced by one of the workspace's own: a
        volume a config names (``source=cache``), or leaves unnamed, becomes
        ``berth-<instance>-ws-<id>-v-...``, made for this workspace and deleted with it,
        so no name reaches another workspace's volumes or Berth's. Host paths only come
        here when an admin approved them (app.devcontainer.policy)."""
        owned = []
        for mount in mounts:
            target, kind = posixpath.normpath(mount["Target"]), mount.get("Type", "volume")
            target = "/" + target.lstrip("/")  # normpath keeps a leading //
            if target in reserved or any(target.startswith(r + "/") for r in reserved):
                raise ProvisionError(
                    f"mounts: {target} is where Berth mounts its own; choose another target"
                )
            if kind == "volume":
                source = mount.get("Source") or ""
                slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", source)[:40] if source else "anon"
                digest = hashlib.sha256(f"{source}|{target if not source else ''}".encode())
                volume = self.ensure_volume(ws, f"v-{slug}-{digest.hexdigest()[:8]}")
                owned.append(
                    Mount(
                        target=target,
                        source=volume.name,
                        type="volume",
                        read_only=bool(mount.get("ReadOnly")),
                    )
                )
            elif kind in ("tmpfs", "bind"):
                owned.append(mount)
            else:
                raise ProvisionError(f"mounts: type {kind!r} is not allowed")
        return owned

    # --- containers -----------------------------------------------------------------

    def find_container(self, ws_id: int):
        found = [
            c for c in self.managed("containers", ws_id) if c.labels.get(LABEL_ROLE) == "workspace"
        ]
        return found[0] if found else None

    def create_container(
        self,
        ws: WorkspaceRef,
        spec: RunSpec,
        limits: Limits,
        home: str,
        agent: bool = False,
        owner: tuple[int, int] = (0, 0),
        egress_port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        """Create (not start) the hardened container of ``ws`` from ``spec``. With
        ``egress_port``, on the egress network, its DNS and proxy at the gateway."""
        network = self.ensure_egress_network() if egress_port else self.ensure_network(ws)
        workspace_volume = self.ensure_volume(ws, "workspace")
        home_volume = self.ensure_volume(ws, "home")
        kwargs = spec.docker_create_kwargs()
        mounts = [
            # no_copy: an empty volume would otherwise take its owner from the image's
            # mount point on every start, undoing the chown to the workspace user.
            Mount(
                target=spec.workspace_folder,
                source=workspace_volume.name,
                type="volume",
                no_copy=True,
            ),
            Mount(target=home, source=home_volume.name, type="volume"),
        ]
        agent_dir = self.agent_socket_dir(ws.id)
        if agent_dir is not None:
            agent_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            mounts.append(
                Mount(target=AGENT_SOCKET_DIR, source=str(agent_dir), type="bind", read_only=True)
            )
        if self.tools and not agent:
            mounts.append(
                Mount(target=tools.MOUNT_POINT, source=tools.VOLUME, type="volume", read_only=True)
            )
        if self.helper_dir is not None:
            mounts.append(
                Mount(
                    target=KEEPALIVE_BIN,
                    source=str(self._keepalive_script()),
                    type="bind",
                    read_only=True,
                )
            )
        mounts += self._own_mounts(
            ws,
            [
                m
                for m in kwargs.pop("mounts")
                if m["Target"] not in (spec.workspace_folder, home)
                and not (spec.workspace_mount and m["Target"] == spec.workspace_mount.target)
            ],
            {KEEPALIVE_DIR, AGENT_SOCKET_DIR, tools.MOUNT_POINT, KEEPALIVE_BIN},
        )
        security_opt = [seccomp.security_opt(agent), *(kwargs.pop("security_opt", None) or [])]
        if agent and "no-new-privileges" not in security_opt:
            security_opt.append("no-new-privileges")
        base_caps = AGENT_CAPABILITIES if agent else WORKSPACE_CAPABILITIES
        cap_add = sorted(
            set(base_caps)
            | {c.upper().removeprefix("CAP_") for c in kwargs.pop("cap_add", None) or []}
        )
        kwargs.update(
            name=ws.container_name,
            # Sandboxes are all "sandbox-<id>": a warm-pool member claimed under another
            # name is no different from a fresh one.
            hostname=f"sandbox-{ws.id}" if agent else spec.run_args.hostname or ws.name,
            labels={
                **kwargs["labels"],
                **ws.labels,
                LABEL_ROLE: "workspace",
                LABEL_USER: spec.remote_user,
                LABEL_FOLDER: spec.workspace_folder,
            },
            mounts=mounts,
            network=network.name,
            cap_drop=["ALL"],
            cap_add=cap_add,
            security_opt=security_opt,
            pids_limit=limits.pids,
            mem_limit=f"{limits.memory_mb}m",
            memswap_limit=f"{limits.memory_mb}m",
            nano_cpus=int(limits.cpus * 1e9),
            stop_signal="SIGTERM",
            restart_policy=RESTART_POLICY,
        )
        if extra_env:
            kwargs["environment"] = {**(kwargs.get("environment") or {}), **extra_env}
        if egress_port:
            gateway = self.egress_gateway()
            proxy = f"http://{gateway}:{egress_port}"
            kwargs["dns"] = [gateway]
            kwargs["environment"] = {
                **(kwargs.get("environment") or {}),
                **{
                    name: proxy
                    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
                },
                "NO_PROXY": "localhost,127.0.0.1",
                "no_proxy": "localhost,127.0.0.1",
            }
        # Only the workspace user writes /run/berth, and only in memory.
        kwargs["tmpfs"] = {
            KEEPALIVE_DIR: f"rw,nosuid,nodev,noexec,size=1m,mode=0700,uid={owner[0]},gid={owner[1]}"
        }
        if agent:
            kwargs["read_only"] = True
            kwargs["tmpfs"].update(
                {
                    "/tmp": "rw,nosuid,nodev,size=256m,mode=1777",  # noqa: S108
                    "/run": "rw,nosuid,nodev,size=16m",
                }
            )
        try:
            return self.client.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            raise ProvisionError(
                f"Docker refused the container: {exc.explanation or exc}"
            ) from None

    @staticmethod
    def started_at(container) -> str | None:
        """The engine's own record of when it last started the container (compared as
        written, never against Berth's clock), or None if it never started."""
        text = (container.attrs.get("State") or {}).get("StartedAt") or ""
        return None if not text or text.startswith("0001-") else text

    @staticmethod
    def outdated(container) -> bool:
        """Whether the container was made by an older Berth with a writable host folder
        at /run/berth (recreated: the workspace could reach host files through it)."""
        return any(
            m.get("Destination") == KEEPALIVE_DIR and m.get("Type") == "bind"
            for m in container.attrs.get("Mounts") or []
        )

    def agent_socket_dir(self, ws_id: int) -> Path | None:
        return self.agent_socket_root / str(ws_id) if self.agent_socket_root else None

    @staticmethod
    def identity(container) -> tuple[str, str | None]:
        """The user and folder commands run as and in (the devcontainer's remote user)."""
        labels = container.labels
        return labels.get(LABEL_USER, "root"), labels.get(LABEL_FOLDER)

    def start(self, container) -> None:
        try:
            self.ensure_restart_policy(container)
        except docker.errors.APIError as exc:  # the start matters more than the policy
            log.warning("could not set the restart policy of %s: %s", container.name, exc)
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise ProvisionError(
                f"Docker could not start the container: {exc.explanation or exc}"
            ) from None

    @staticmethod
    def ensure_restart_policy(container) -> None:
        """Containers made by a Berth before RESTART_POLICY get it, in place."""
        policy = (container.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
        if policy.get("Name") != RESTART_POLICY["Name"]:
            container.update(restart_policy=RESTART_POLICY)

    def stop(self, container, grace_seconds: int = 10) -> None:
        """SIGTERM, then SIGKILL after the grace period (Docker's stop does exactly that)."""
        container.stop(timeout=grace_seconds)

    def seed_workspace_volume(
        self, ws: WorkspaceRef, image: str, uid: int, gid: int, source_dir: str | None = None
    ) -> None:
        """Fill a new workspace volume (with a repository, if given) and give it to the
        workspace user, in a throwaway container that may only chown: no network, no
        other capability. The workspace container itself may have no root to do it."""
        volume = self.ensure_volume(ws, "workspace")
        seed = self.client.containers.create(
            image,
            entrypoint=["chown", "-R", f"{uid}:{gid}", "/seed"],
            user="0:0",
            mounts=[Mount(target="/seed", source=volume.name, type="volume", no_copy=True)],
            network_disabled=True,
            cap_drop=["ALL"],
            cap_add=["CHOWN"],
            labels={**ws.labels, LABEL_ROLE: "seed"},
        )
        try:
            if source_dir:
                buffer = io.BytesIO()
                with tarfile.open(fileobj=buffer, mode="w") as tar:
                    tar.add(source_dir, arcname=".")
                seed.put_archive("/seed", buffer.getvalue())
            seed.start()
            outcome = seed.wait(timeout=300)
            if outcome.get("StatusCode") != 0:
                raise ProvisionError(
                    "preparing the workspace volume failed: "
                    + seed.logs().decode(errors="replace")[-300:]
                )
        finally:
            seed.remove(force=True)

    # --- volume archives ----------------------------------------------------------------

    def _volume_helper(self, ws: WorkspaceRef, volume: str, image: str, read_only: bool):
        """A container that is never started, only used to read or write a volume
        through Docker's archive API (which keeps owners, modes and links)."""
        return self.client.containers.create(
            image,
            entrypoint=["true"],
            mounts=[
                Mount(
                    target="/volume",
                    source=volume,
                    type="volume",
                    read_only=read_only,
                    no_copy=True,
                )
            ],
            network_disabled=True,
            labels={**ws.labels, LABEL_ROLE: "backup"},
        )

    def export_volume(self, ws: WorkspaceRef, role: str, image: str, destination: Path) -> None:
        """Write the volume's files to ``destination`` as a gzipped tar (paths volume/...)."""
        helper = self._volume_helper(ws, ws.volume_name(role), image, read_only=True)
        try:
            stream, _ = helper.get_archive("/volume")
            with gzip.open(destination, "wb", compresslevel=3) as out:
                for chunk in stream:
                    out.write(chunk)
        finally:
            helper.remove(force=True)

    def import_volume(self, ws: WorkspaceRef, role: str, image: str, source: Path) -> None:
        """Fill the (new) volume ``role`` of ``ws`` from an ``export_volume`` archive."""
        volume = self.ensure_volume(ws, role)
        helper = self._volume_helper(ws, volume.name, image, read_only=False)
        try:
            with source.open("rb") as data:
                if not helper.put_archive("/", data):
                    raise ProvisionError(f"Docker refused to restore {source.name}")
        finally:
            helper.remove(force=True)

    # --- exec -----------------------------------------------------------------------

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
        sock = self.client.api.exec_start(created["Id"], socket=True, tty=tty)
        raw = getattr(sock, "_sock", sock)
        raw.settimeout(None)  # docker-py leaves its API timeout on the hijacked socket
        return created["Id"], raw

    def exec_stream(
        self,
        container_id: str,
        argv: list[str],
        *,
        user: str = "",
        env: dict | None = None,
        workdir: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> Iterator[tuple[str, bytes] | ExecEnd]:
        """Run a command and yield ("stdout" | "stderr", bytes) as its output comes, then
        one ``ExecEnd``. Closing the generator early ends the command."""
        exec_id, raw = self.open_exec(
            container_id, argv, user=user, env=env, workdir=workdir, stdin=stdin is not None
        )
        finished = False
        try:
            if stdin is not None:
                raw.sendall(stdin)
                raw.shutdown(socket.SHUT_WR)  # half-close: the command sees end of input
            frames = Frames()
            deadline = time.monotonic() + timeout if timeout else None
            timed_out = False
            with Readable(raw) as waiting:
                while True:
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not waiting.wait(wait):
                        timed_out = True
                        break
                    chunk = raw.recv(65536)
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
        """The exit code once the command has ended. Read it after its output reached
        end of file: the engine may still report it running for a moment."""
        deadline = time.monotonic() + wait_seconds
        while True:
            state = self.client.api.exec_inspect(exec_id)
            if not state.get("Running") and state.get("ExitCode") is not None:
                return state["ExitCode"]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

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

    def container_address(self, ws_id: int) -> str | None:
        """The IP address of the workspace's running container on its own network."""
        found = self.client.api.containers(
            filters={
                "label": [
                    f"{LABEL_MANAGED}=true",
                    f"{LABEL_INSTANCE}={self.instance}",
                    f"{LABEL_WORKSPACE}={ws_id}",
                    f"{LABEL_ROLE}=workspace",
                ],
                "status": "running",
            }
        )
        for summary in found:
            for network in ((summary.get("NetworkSettings") or {}).get("Networks") or {}).values():
                if network.get("IPAddress"):
                    return network["IPAddress"]
        return None

    def container_pid(self, container_id: str) -> int | None:
        """The host pid of the container's first process (its namespaces), if running."""
        state = self.client.api.inspect_container(container_id).get("State") or {}
        return state.get("Pid") if state.get("Running") else None

    def cpu_usage_ns(self, container) -> int:
        """The container's CPU time so far (all its processes), in nanoseconds."""
        raw = container.stats(stream=False, one_shot=True)
        return int(raw.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0))

    def stats(self, container) -> dict:
        raw = container.stats(stream=False)
        memory = raw.get("memory_stats", {})
        return {
            "memory_bytes": memory.get("usage", 0),
            "memory_limit": memory.get("limit", 0),
            "pids": raw.get("pids_stats", {}).get("current", 0),
        }

    # --- removal and inventory --------------------------------------------------------

    def managed(self, kind: str, ws_id: int | None = None) -> list:
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={self.instance}"]}
        if ws_id is not None:
            filters["label"].append(f"{LABEL_WORKSPACE}={ws_id}")
        if kind == "containers":
            return self.client.containers.list(all=True, filters=filters)
        if kind == "volumes":
            return self.client.volumes.list(filters=filters)
        return self.client.networks.list(filters=filters)

    def remove_workspace(self, ws_id: int, keep_volumes: bool = False) -> None:
        """Remove the workspace's container and network, and its volumes unless kept."""
        for container in self.managed("containers", ws_id):
            container.remove(force=True)
        for network in self.managed("networks", ws_id):
            network.remove()
        if not keep_volumes:
            for volume in self.managed("volumes", ws_id):
                volume.remove(force=True)
        if self.agent_socket_root is not None:
            shutil.rmtree(self.agent_socket_root / str(ws_id), ignore_errors=True)

    def remove_image_if_unused(self, image: str, protected: set[str]) -> bool:
        """Remove a built workspace image that no container and no live workspace uses."""
        if not image or not image.startswith("berth-devcontainer:") or image in protected:
            return False
        if self.client.containers.list(all=True, filters={"ancestor": image}):
            return False
        try:
            self.client.images.remove(image)
        except docker.errors.APIError:
            return False
        return True

    # --- host firewall ---------------------------------------------------------------

    def ensure_isolation_rules(self, egress_port: int | None = None) -> str:
        """Stop workspaces and builds from reaching the host's own ports (the control
        plane) through their bridges: an INPUT rule on berth* interfaces; replies to
        connections the host opened stay allowed. From the egress network, only this
        instance's egress proxy and DNS are open. And stop other local users of the host
        from opening connections into workspaces (an IDE or a port reached around
        Berth's login): only Berth's own user may. Returns what was done, for the log."""
        iptables = shutil.which("iptables")
        if not iptables:
            return "iptables is not installed: workspaces can reach ports on the host"
        egress_bridge = f"{BRIDGE_PREFIX}{self.instance}eg"
        bridges = f"{BRIDGE_PREFIX}+"
        proxy = ["-i", egress_bridge, "-p", "tcp", "--dport", str(egress_port)]
        # Only this instance's gateway address: another Berth on the engine may run its
        # proxy on the same port of its own gateway.
        gateway = ["-d", self.egress_gateway()] if egress_port else []
        rules = [
            *(
                [
                    ("INPUT", [*proxy[:2], *gateway, *proxy[2:], "-j", "ACCEPT"]),
                    ("INPUT", ["-i", egress_bridge, *gateway]
                     + ["-p", "udp", "--dport", "53", "-j", "ACCEPT"]),
                ]
                if egress_port
                else []
            ),
            ("INPUT", ["-i", bridges, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"]
             + ["-j", "ACCEPT"]),
            ("INPUT", ["-i", bridges, "-j", "DROP"]),
            ("OUTPUT", ["-o", bridges, "-m", "conntrack", "--ctstate", "NEW", "-m", "owner"]
             + ["!", "--uid-owner", str(os.getuid()), "-j", "REJECT"]),
        ]  # fmt: skip
        # Workspaces and builds keep their way to the network, but never to a cloud's
        # metadata service (link-local), whose answers are the host's credentials.
        if subprocess.run([iptables, "-S", "DOCKER-USER"], capture_output=True).returncode == 0:
            rules.append(("DOCKER-USER", ["-i", bridges, "-d", "169.254.0.0/16", "-j", "REJECT"]))
        # Earlier Berths opened the proxy port on every address of the egress bridge.
        legacy = [("INPUT", [*proxy, "-j", "ACCEPT"])] if egress_port else []
        done = []
        for chain, rule in legacy:
            while (
                subprocess.run([iptables, "-D", chain, *rule], capture_output=True).returncode == 0
            ):
                done.append(f"removed {chain} {' '.join(rule)}")
        positions: dict[str, int] = {}
        for chain, rule in rules:
            position = positions[chain] = positions.get(chain, 0) + 1
            exists = subprocess.run([iptables, "-C", chain, *rule], capture_output=True)
            if exists.returncode == 0:
                continue
            added = subprocess.run(
                [iptables, "-I", chain, str(position), *rule], capture_output=True, text=True
            )
            if added.returncode != 0:
                return f"could not add the {chain} rule: {added.stderr.strip()}"
            done.append(f"{chain} {' '.join(rule)}")
        return "added: " + "; ".join(done) if done else "firewall rules already in place"
