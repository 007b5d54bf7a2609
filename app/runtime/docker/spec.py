"""The hardened container a workspace runs in, as the keyword arguments of Docker's
create call: a pure function of the devcontainer's run spec and Berth's policy, so what a
workspace may do can be read (and tested) without an engine."""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

from docker.types import Mount

from app.devcontainer.policy import DEFAULT_CAPABILITIES
from app.devcontainer.run import RunSpec
from app.runtime import Limits, ProvisionError, WorkspaceRef
from app.runtime.docker import names, seccomp
from app.runtime.layout import AGENT_SOCKET_DIR, KEEPALIVE_BIN, KEEPALIVE_DIR, TOOLS_MOUNT_POINT

WORKSPACE_CAPABILITIES = list(DEFAULT_CAPABILITIES)
# Agents have no sudo, so no audit messages to send either.
AGENT_CAPABILITIES = [c for c in DEFAULT_CAPABILITIES if c != "AUDIT_WRITE"]
# The engine brings a running workspace back after it restarts (a host reboot, an engine
# upgrade); one Berth stopped stays stopped. The worker then sets it up again (the IDE, a
# sandbox's token, postStartCommand).
RESTART_POLICY = {"Name": "unless-stopped"}
# Berth's own mount points: a config may mount nothing at or under them.
RESERVED = (KEEPALIVE_DIR, AGENT_SOCKET_DIR, TOOLS_MOUNT_POINT, KEEPALIVE_BIN)
TOOLS_VOLUME = "berth-tools"


@dataclass(frozen=True)
class Egress:
    """The egress network's gateway, where the proxy (on ``port``) and DNS listen."""

    gateway: str
    port: int


def create_kwargs(spec: RunSpec) -> dict:
    """The devcontainer's own part of the create call, as ``devcontainer up`` makes it."""
    mounts = []
    if spec.workspace_mount:
        mounts.append(docker_mount(vars(spec.workspace_mount)))
    mounts += [docker_mount(m) for m in spec.mounts]
    kwargs = {
        "image": spec.image,
        "labels": spec.labels,
        "environment": spec.env,
        "entrypoint": spec.entrypoint,
        "command": spec.command,
        "mounts": mounts,
        "init": spec.init or None,
        "privileged": spec.privileged,
        "cap_add": spec.cap_add or None,
        "security_opt": spec.security_opt or None,
        "hostname": spec.run_args.hostname,
        "extra_hosts": dict(h.split(":", 1) for h in spec.run_args.extra_hosts) or None,
        "shm_size": spec.run_args.shm_size,
        "cap_drop": spec.run_args.cap_drop or None,
        "working_dir": spec.run_args.workdir,
        "detach": True,
    }
    if spec.container_user:
        kwargs["user"] = spec.container_user
    return {key: value for key, value in kwargs.items() if value is not None}


def docker_mount(mount: dict) -> Mount:
    kind = mount.get("type", "volume")
    if kind == "tmpfs":
        return Mount(target=mount["target"], source=None, type="tmpfs")
    return Mount(
        target=mount["target"],
        source=mount.get("source") or None,
        type=kind,
        read_only=str(mount.get("readonly", mount.get("ro", "false"))).lower() in ("true", "1"),
    )


def _check_target(target: str, what: str) -> None:
    """Nothing of a workspace's is mounted at /, or at or under Berth's own mount points
    (a workspace folder over the tools would have Berth run the repository's code-server)."""
    target = "/" + posixpath.normpath(target).lstrip("/")
    kept = (*RESERVED, "/proc", "/sys", "/dev")
    if target == "/" or target in kept or any(target.startswith(r + "/") for r in kept):
        raise ProvisionError(
            f"{what}: {target} is where Berth mounts its own (or the root); choose another"
        )
    if any(r.startswith(target + "/") for r in RESERVED):
        raise ProvisionError(f"{what}: {target} holds Berth's own mount points; choose another")


def own_mounts(ws: WorkspaceRef, mounts: list[dict]) -> tuple[list, list[str]]:
    """The config's mounts (none at or under Berth's own mount points), each volume
    replaced by one of the workspace's own, and the roles of the volumes that needs: a
    volume a config names (``source=cache``), or leaves unnamed, becomes
    ``berth-<instance>-ws-<id>-v-...``, made for this workspace and deleted with it, so no
    name reaches another workspace's volumes or Berth's. Host paths only come here when
    an admin approved them (app.devcontainer.policy)."""
    owned, roles = [], []
    for mount in mounts:
        target, kind = posixpath.normpath(mount["Target"]), mount.get("Type", "volume")
        target = "/" + target.lstrip("/")  # normpath keeps a leading //
        _check_target(target, "mounts")
        if kind == "volume":
            source = mount.get("Source") or ""
            slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", source)[:40] if source else "anon"
            digest = hashlib.sha256(f"{source}|{target if not source else ''}".encode())
            role = f"v-{slug}-{digest.hexdigest()[:8]}"
            roles.append(role)
            owned.append(
                Mount(
                    target=target,
                    source=names.volume_name(ws, role),
                    type="volume",
                    read_only=bool(mount.get("ReadOnly")),
                )
            )
        elif kind in ("tmpfs", "bind"):
            owned.append(mount)
        else:
            raise ProvisionError(f"mounts: type {kind!r} is not allowed")
    return owned, roles


def container(
    ws: WorkspaceRef,
    spec: RunSpec,
    limits: Limits,
    home: str,
    *,
    network: str,
    agent: bool = False,
    owner: tuple[int, int] = (0, 0),
    egress: Egress | None = None,
    extra_env: dict[str, str] | None = None,
    tools: bool = False,
    keepalive_source: str | None = None,
    agent_dir: str | None = None,
) -> tuple[dict, list[str]]:
    """The create call's keyword arguments for the hardened container of ``ws``, and the
    roles of the volumes it mounts (made before the create)."""
    kwargs = create_kwargs(spec)
    # A compose config says where the repository is; its workspaceFolder may be /.
    folder = (
        spec.workspace_mount.target
        if spec.compose and spec.workspace_mount
        else spec.workspace_folder
    )
    _check_target(folder, "workspaceFolder")
    _check_target(home, "the remote user's home folder")
    if posixpath.normpath(folder) == posixpath.normpath(home):
        raise ProvisionError(
            f"workspaceFolder: {folder} is the remote user's home folder, which has a volume "
            "of its own; choose another"
        )
    workspace_volume = names.volume_name(ws, "workspace")
    mounts = [
        # no_copy: an empty volume would otherwise take its owner from the image's
        # mount point on every start, undoing the chown to the workspace user.
        Mount(
            target=folder,
            source=workspace_volume,
            type="volume",
            no_copy=True,
        ),
        Mount(target=home, source=names.volume_name(ws, "home"), type="volume"),
    ]
    if agent_dir is not None:
        mounts.append(Mount(target=AGENT_SOCKET_DIR, source=agent_dir, type="bind", read_only=True))
    if tools and not agent:
        mounts.append(
            Mount(target=TOOLS_MOUNT_POINT, source=TOOLS_VOLUME, type="volume", read_only=True)
        )
    if keepalive_source is not None:
        mounts.append(
            Mount(target=KEEPALIVE_BIN, source=keepalive_source, type="bind", read_only=True)
        )
    others = [
        m
        for m in kwargs.pop("mounts")
        if m["Target"] not in (spec.workspace_folder, home)
        and not (spec.workspace_mount and m["Target"] == spec.workspace_mount.target)
    ]
    # A compose service may mount the repository twice: the workspace volume again.
    for mount in [m for m in others if m.get("Source") == workspace_volume]:
        _check_target(mount["Target"], "mounts")
        mounts.append(Mount(target=mount["Target"], source=workspace_volume, type="volume"))
    config_mounts, roles = own_mounts(
        ws, [m for m in others if m.get("Source") != workspace_volume]
    )
    mounts += config_mounts
    security_opt = [seccomp.security_opt(agent), *(kwargs.pop("security_opt", None) or [])]
    if agent and "no-new-privileges" not in security_opt:
        security_opt.append("no-new-privileges")
    base_caps = AGENT_CAPABILITIES if agent else WORKSPACE_CAPABILITIES
    cap_add = sorted(
        set(base_caps) | {c.upper().removeprefix("CAP_") for c in kwargs.pop("cap_add", None) or []}
    )
    kwargs.update(
        name=names.container_name(ws),
        # Sandboxes are all "sandbox-<id>": a warm-pool member claimed under another
        # name is no different from a fresh one.
        hostname=f"sandbox-{ws.id}" if agent else spec.run_args.hostname or ws.name,
        labels={
            **kwargs["labels"],
            **names.labels(ws),
            names.LABEL_ROLE: "workspace",
            names.LABEL_USER: spec.remote_user,
            names.LABEL_FOLDER: spec.workspace_folder,
        },
        mounts=mounts,
        network=network,
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
    if egress is not None:
        proxy = f"http://{egress.gateway}:{egress.port}"
        kwargs["dns"] = [egress.gateway]
        kwargs["environment"] = {
            **(kwargs.get("environment") or {}),
            **{name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
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
    return kwargs, roles


def service_name(ws: WorkspaceRef, service: str) -> str:
    return f"{names.container_name(ws)}-svc-{service}"


def service_create_kwargs(service) -> dict:
    """Another compose service's own part of the create call, as Compose makes it."""
    kwargs = {
        "image": service.image,
        "environment": service.env,
        "entrypoint": service.entrypoint,
        "command": service.command,
        "user": service.user,
        "working_dir": service.working_dir,
        "labels": dict(service.labels),
        "mounts": [docker_mount(m) for m in service.mounts],
        "init": service.init or None,
        "tty": service.tty,
        "stdin_open": service.stdin_open,
        "cap_add": service.cap_add or None,
        "security_opt": service.security_opt or None,
        "privileged": service.privileged,
        "hostname": service.hostname,
        "stop_signal": service.stop_signal,
        "detach": True,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


def companion(
    ws: WorkspaceRef,
    service,
    order: int,
    limits: Limits,
    *,
    network: str,
    workspace_volume: str,
) -> tuple[dict, list[str]]:
    """The create call for another service of a compose workspace (a database, a cache),
    hardened as the workspace is: its capability set and seccomp profile, the template's
    limits, on the workspace's own network under its service name, mounting only the
    workspace's volumes (a named volume of the compose files becomes the workspace's own,
    shared by the services that name it). Nothing of Berth's (tools, sockets) is in it."""
    mounts, config_mounts = [], []
    for mount in service.mounts:
        if mount.get("type") == "volume" and mount.get("source") == workspace_volume:
            _check_target(mount["target"], f"services.{service.name}.volumes")
            mounts.append(Mount(target=mount["target"], source=workspace_volume, type="volume"))
        else:
            config_mounts.append(docker_mount(mount))
    owned, roles = own_mounts(ws, config_mounts)
    kwargs = service_create_kwargs(service)
    kwargs.update(
        name=service_name(ws, service.name),
        hostname=service.hostname or service.name,
        labels={
            **service.labels,
            **names.labels(ws),
            names.LABEL_ROLE: "service",
            names.LABEL_SERVICE: service.name,
            names.LABEL_ORDER: str(order),
        },
        mounts=mounts + owned,
        network=network,
        cap_drop=["ALL"],
        cap_add=sorted(
            set(WORKSPACE_CAPABILITIES) | {c.upper().removeprefix("CAP_") for c in service.cap_add}
        ),
        security_opt=[seccomp.security_opt(False), *service.security_opt],
        pids_limit=limits.pids,
        mem_limit=f"{limits.memory_mb}m",
        memswap_limit=f"{limits.memory_mb}m",
        nano_cpus=int(limits.cpus * 1e9),
        stop_signal=service.stop_signal or "SIGTERM",
        restart_policy=RESTART_POLICY,
    )
    return {key: value for key, value in kwargs.items() if value is not None}, roles
