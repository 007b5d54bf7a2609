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
    run_args = policy.check(
        merged, raw.get("runArgs") or [], approvals or policy.Approvals(), file=plan.config.path
    )

    container_user = merged.get("containerUser") or run_args.user or None
    remote_user = merged.get("remoteUser") or container_user or result.image_user or "root"
    workspace_mount = _workspace_mount(plan, raw, workspace_volume, approvals or policy.Approvals())

    env = dict(merged.get("containerEnv") or {})
    env.update(run_args.env_dict)

    labels = dict(plan.id_labels)
    if result.container_label:
        labels[metadata.LABEL] = result.container_label
    labels.update(run_args.label_dict)

    entrypoints = "\n".join(merged.get("entrypoints") or [])
    command = ["-c", START_SCRIPT.format(entrypoints=entrypoints), "-"]
    override = merged.get("overrideCommand")
    if override is False:
        command += [*result.image_entrypoint, *result.image_cmd]

    warnings = list(plan.warnings)
    forward_ports = list(merged.get("forwardPorts") or [])
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
        mounts=[parse_mount(m) for m in merged.get("mounts") or []]
        + [parse_mount(m) for m in run_args.mounts]
        + run_args.volume_mounts,
        entrypoint=["/bin/sh"],
        command=command,
        init=bool(merged.get("init") or run_args.init),
        privileged=bool(merged.get("privileged")),
        cap_add=list(merged.get("capAdd") or []) + run_args.cap_add,
        security_opt=list(merged.get("securityOpt") or []) + run_args.security_opt,
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
