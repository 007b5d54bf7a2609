"""``run_spec``: everything needed to create, start and set up the container of a Plan."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from app.devcontainer import metadata, policy
from app.devcontainer.build import BuildResult
from app.devcontainer.config import LIFECYCLE_HOOKS
from app.devcontainer.errors import ConfigError
from app.devcontainer.plan import Plan
from app.devcontainer.runargs import RunArgs
from app.devcontainer.variables import Context, substitute

# The reference implementation's container start script: run the Features' entrypoints,
# then the command (or wait forever), and exit cleanly on SIGTERM.
START_SCRIPT = (
    'echo Container started\ntrap "exit 0" 15\n{entrypoints}\nexec "$@"\n'
    "while sleep 1 & wait $!; do :; done"
)


# The same script as the reference writes it into a compose override file.
COMPOSE_START_SCRIPT = (
    'echo Container started\n trap "exit 0" 15\n {entrypoints}\n exec "$@"\n'
    " while sleep 1 & wait $!; do :; done"
)


@dataclass
class ServiceRun:
    """Another service of a compose config, as its container is created."""

    name: str
    image: str
    env: dict[str, str]
    entrypoint: list[str] | None
    command: list[str] | None
    user: str | None
    working_dir: str | None
    labels: dict[str, str]
    mounts: list[dict]  # type/source/target/readonly; "volume" sources are project volumes
    init: bool
    tty: bool
    stdin_open: bool
    cap_add: list[str]
    security_opt: list[str]
    privileged: bool
    hostname: str | None
    stop_signal: str | None


@dataclass
class ComposeRun:
    project: str
    service: str  # the devcontainer's own service
    services: list[ServiceRun]  # the others started with it, each after its dependencies
    volumes: list[str]  # the project's named volumes every service may mount


@dataclass(frozen=True)
class Hook:
    origin: str  # a Feature's id, or "devcontainer.json"
    command: str | list | dict


@dataclass
class WorkspaceMount:
    type: str  # "bind" or "volume"
    source: str
    target: str


@dataclass
class RunSpec:
    image: str
    labels: dict[str, str]
    env: dict[str, str]
    container_user: str | None  # None: the image's own USER
    remote_user: str
    workspace_folder: str
    workspace_mount: WorkspaceMount | None
    mounts: list[dict]
    entrypoint: list[str]
    command: list[str]
    init: bool
    privileged: bool
    cap_add: list[str]
    security_opt: list[str]
    run_args: RunArgs
    remote_env: dict[str, str | None]
    hooks: dict[str, list[Hook]]
    wait_for: str
    user_env_probe: str
    forward_ports: list
    ports_attributes: dict
    other_ports_attributes: dict | None
    customizations: dict
    vscode: dict
    host_requirements: dict | None
    update_remote_user_uid: bool  # recorded; Berth's workspaces use volumes, not host binds
    context: Context
    warnings: list[str] = field(default_factory=list)
    compose: ComposeRun | None = None
    stop_signal: str | None = None


def parse_mount(value) -> dict:
    """A mount as a dict with type/source/target, from the string or object form."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    fields: dict = {}
    for part in value.split(","):
        key, sep, item = part.partition("=")
        key = key.strip()
        key = {"src": "source", "dst": "target", "destination": "target"}.get(key, key)
        fields[key] = item.strip() if sep else "true"
    if "target" not in fields:
        raise ConfigError(f"mount {value!r} has no target")
    fields.setdefault("type", "volume")
    return fields


def run_spec(
    plan: Plan,
    result: BuildResult,
    approvals: policy.Approvals | None = None,
    workspace_volume: str | None = None,
) -> RunSpec:
    """How to run the built image. ``workspace_volume`` replaces the default bind mount of
    the local folder with a named volume (Berth's way on a server)."""
    ctx = plan.context
    entries = substitute(result.label_entries, ctx)
    merged = metadata.merge(entries)
    raw = plan.raw
    service = plan.compose.services[plan.service] if plan.compose else None
    # runArgs are for image and Dockerfile configs (the reference ignores them on compose)
    run_args = policy.check(
        merged,
        [] if service else raw.get("runArgs") or [],
        approvals or policy.Approvals(),
        file=plan.config.path,
    )

    container_user = merged.get("containerUser") or run_args.user or None
    if service and not container_user:
        container_user = service.user
    remote_user = merged.get("remoteUser") or container_user or result.image_user or "root"
    mounts = [parse_mount(m) for m in merged.get("mounts") or []]
    if service:
        workspace_mount, service_mounts = compose_mounts(plan, service, workspace_volume)
        mounts = service_mounts + mounts
    else:
        workspace_mount = _workspace_mount(
            plan, raw, workspace_volume, approvals or policy.Approvals()
        )

    env = dict(service.environment) if service else {}
    env.update(merged.get("containerEnv") or {})
    env.update(run_args.env_dict)

    labels = dict(service.labels) if service else {}
    labels.update(plan.id_labels)
    if result.container_label:
        labels[metadata.LABEL] = result.container_label
    labels.update(run_args.label_dict)

    entrypoints = "\n".join(merged.get("entrypoints") or [])
    if service:
        # Compose's own: an overrideCommand that is not set keeps the service's command.
        override = merged.get("overrideCommand") is True
        own = service.entrypoint if service.entrypoint is not None else result.image_entrypoint
        script = COMPOSE_START_SCRIPT.format(entrypoints=entrypoints)
        entrypoint = ["/bin/sh", "-c", script, "-", *([] if override else own)]
        if override:
            command = []
        elif service.command is not None:
            command = list(service.command)
        else:
            command = [] if service.entrypoint is not None else list(result.image_cmd)
    else:
        entrypoint = ["/bin/sh"]
        command = ["-c", START_SCRIPT.format(entrypoints=entrypoints), "-"]
        if merged.get("overrideCommand") is False:
            command += [*result.image_entrypoint, *result.image_cmd]

    warnings = list(plan.warnings)
    forward_ports = list(merged.get("forwardPorts") or [])
    for port in forward_ports:
        host = str(port).rpartition(":")[0]
        if host not in ("", "localhost", "127.0.0.1"):
            warnings.append(
                f"forwardPorts {port}: only the workspace's own ports are served; from "
                f"inside it, {port} is reached by that name"
            )
    app_port = raw.get("appPort")
    if app_port is not None:
        for port in app_port if isinstance(app_port, list) else [app_port]:
            if port not in forward_ports:
                forward_ports.append(port)
        warnings.append(
            "appPort is served like forwardPorts (behind Berth's login), "
            "never published on the host"
        )

    hooks = {
        hook: [Hook(item["origin"], item["command"]) for item in merged[hook + "s"]]
        for hook in LIFECYCLE_HOOKS
    }
    return RunSpec(
        image=result.image,
        labels=labels,
        env=env,
        container_user=container_user,
        remote_user=remote_user,
        workspace_folder=plan.workspace_folder,
        workspace_mount=workspace_mount,
        mounts=mounts + [parse_mount(m) for m in run_args.mounts] + run_args.volume_mounts,
        entrypoint=entrypoint,
        command=command,
        init=bool(merged.get("init") or run_args.init or (service and service.init)),
        privileged=bool(merged.get("privileged") or (service and service.privileged)),
        cap_add=list(merged.get("capAdd") or [])
        + run_args.cap_add
        + (service.cap_add if service else []),
        security_opt=list(merged.get("securityOpt") or [])
        + run_args.security_opt
        + (service.security_opt if service else []),
        run_args=run_args,
        remote_env=dict(merged.get("remoteEnv") or {}),
        hooks=hooks,
        wait_for=merged.get("waitFor") or "updateContentCommand",
        user_env_probe=merged.get("userEnvProbe") or "loginInteractiveShell",
        forward_ports=forward_ports,
        ports_attributes=merged.get("portsAttributes") or {},
        other_ports_attributes=merged.get("otherPortsAttributes"),
        customizations=merged.get("customizations") or {},
        vscode=metadata.vscode_customizations(merged),
        host_requirements=merged.get("hostRequirements"),
        update_remote_user_uid=merged.get("updateRemoteUserUID") is not False,
        context=ctx,
        warnings=warnings,
        compose=_compose_run(plan, result, workspace_volume) if service else None,
        stop_signal=service.stop_signal if service else None,
    )


def _workspace_mount(
    plan: Plan, raw: dict, volume: str | None, approvals: policy.Approvals
) -> WorkspaceMount | None:
    local = str(plan.config.workspace)
    if "workspaceMount" in raw:
        if not raw["workspaceMount"]:
            return None
        fields = parse_mount(raw["workspaceMount"])
        if fields.get("type") == "bind" and fields.get("source") == local:
            # The config mounts its own repository: on Berth that is the workspace volume.
            return WorkspaceMount("volume" if volume else "bind", volume or local, fields["target"])
        policy.check_mount(fields, "workspaceMount", approvals, plan.config.path)
        return WorkspaceMount(fields["type"], fields.get("source", ""), fields["target"])
    target = f"/workspaces/{posixpath.basename(local)}"
    return WorkspaceMount("volume" if volume else "bind", volume or local, target)


def _service_mounts(plan: Plan, volumes, workspace_volume: str | None):
    """A service's mounts as dicts, and the workspace mount among them: a bind of the
    repository (or of a folder holding it) becomes, with ``workspace_volume``, that
    volume where the repository appears in the container."""
    repository = str(plan.config.workspace)
    found, mounts = None, []
    for volume in volumes:
        if volume.kind == "bind" and (
            volume.source == repository or repository.startswith(volume.source.rstrip("/") + "/")
        ):
            inner = posixpath.relpath(repository, volume.source)
            target = posixpath.normpath(posixpath.join(volume.target, inner))
            if workspace_volume:
                mount = WorkspaceMount("volume", workspace_volume, target)
            else:
                mount = WorkspaceMount("bind", volume.source, volume.target)
            if found is None:
                found = mount
                continue
            if workspace_volume:  # the repository mounted twice: the same volume again
                mounts.append({"type": "volume", "source": workspace_volume, "target": target})
                continue
        kind = {"anonymous": "volume"}.get(volume.kind, volume.kind)
        mount = {"type": kind, "target": volume.target}
        if volume.source:
            mount["source"] = volume.source
        if volume.read_only:
            mount["readonly"] = "true"
        mounts.append(mount)
    return found, mounts


def compose_mounts(plan: Plan, service, workspace_volume: str | None):
    """The devcontainer service's workspace mount and other mounts. On a server with no
    mount of the repository in the compose files, the workspace volume still holds it, at
    ``/workspaces/<name>`` (the reference mounts nothing then)."""
    found, mounts = _service_mounts(plan, service.volumes, workspace_volume)
    if found is None and workspace_volume:
        target = f"/workspaces/{posixpath.basename(str(plan.config.workspace))}"
        found = WorkspaceMount("volume", workspace_volume, target)
    if found is not None and not workspace_volume:
        mounts.insert(0, {"type": "bind", "source": found.source, "target": found.target})
        found = None  # the engine-only run keeps the compose file's bind as it is
    return found, mounts


def _compose_run(plan: Plan, result: BuildResult, workspace_volume: str | None) -> ComposeRun:
    project = plan.compose
    started = project.started(plan.service, plan.raw.get("runServices"))
    services = []
    for name in started:
        if name == plan.service:
            continue
        service = project.services[name]
        found, mounts = _service_mounts(plan, service.volumes, workspace_volume)
        if found is not None:
            mounts.insert(0, {"type": found.type, "source": found.source, "target": found.target})
        services.append(
            ServiceRun(
                name=name,
                image=result.service_images[name],
                env=dict(service.environment),
                entrypoint=service.entrypoint,
                command=service.command,
                user=service.user,
                working_dir=service.working_dir,
                labels=dict(service.labels),
                mounts=mounts,
                init=bool(service.init),
                tty=service.tty,
                stdin_open=service.stdin_open,
                cap_add=list(service.cap_add),
                security_opt=list(service.security_opt),
                privileged=service.privileged,
                hostname=service.hostname,
                stop_signal=service.stop_signal,
            )
        )
    volumes = sorted(
        {v.source for s in project.services.values() for v in s.volumes if v.kind == "volume"}
    )
    return ComposeRun(project.name, plan.service, services, volumes)
