"""``plan``: what a devcontainer.json asks to build, resolved but not yet built."""

from __future__ import annotations

import functools
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from app.devcontainer import compose, inputs, metadata, oci, policy
from app.devcontainer import features as features_mod
from app.devcontainer.config import DevcontainerConfig
from app.devcontainer.errors import ConfigError
from app.devcontainer.variables import Context, devcontainer_id, substitute

DEFAULT_CACHE = Path.home() / ".cache" / "berth" / "features"


@dataclass
class Plan:
    config: DevcontainerConfig
    raw: dict  # devcontainer.json with localEnv, workspace folders and devcontainerId substituted
    context: Context
    id_labels: dict[str, str]
    kind: str  # "image" or "dockerfile" (for a compose config: of its service)
    image: str = ""
    dockerfile: Path | None = None
    dockerfile_text: str = ""  # read once, from inside the checkout
    build_context: Path | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    build_labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    features: list[features_mod.Feature] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    compose: compose.Project | None = None
    service: str = ""  # the compose service the container is

    @property
    def workspace_folder(self) -> str:
        return self.context.container_workspace

    @property
    def needs_build(self) -> bool:
        """Only an image config without Features runs the image as it is."""
        return self.kind == "dockerfile" or bool(self.features)

    @property
    def config_entry(self) -> dict:
        """devcontainer.json's own metadata entry, with raw (unsubstituted) values."""
        return metadata.config_entry(self.config.raw)

    def feature_entries(self) -> list[dict]:
        return [metadata.feature_entry(f.user_id, f.metadata) for f in self.features]


def default_workspace_folder(config: DevcontainerConfig) -> str:
    if config.kind == "compose":
        return "/"
    return f"/workspaces/{config.workspace.name}"


def _parse_build_options(config: DevcontainerConfig, options: list[str], plan: Plan) -> None:
    items = list(options)
    while items:
        option = items.pop(0)
        name, _, value = option.partition("=")
        if name in ("--label", "--build-arg") and not value:
            if not items:
                raise ConfigError(
                    f"{name} needs a value", file=config.path, property="build.options"
                )
            value = items.pop(0)
        if name == "--label":
            key, _, label_value = value.partition("=")
            plan.build_labels[key] = label_value
        elif name == "--build-arg":
            key, _, arg_value = value.partition("=")
            plan.build_args[key] = arg_value
        elif name == "--no-cache":
            plan.no_cache = True
        else:
            raise ConfigError(
                f"{option!r} is not supported here (supported: --label, --build-arg, --no-cache)",
                file=config.path,
                property="build.options",
                line=config.line_of("options"),
            )


def plan(
    config: DevcontainerConfig,
    local_env: dict[str, str] | None = None,
    approvals: policy.Approvals | None = None,
    feature_cache: Path | None = None,
    fetch=None,
    private=(),
) -> Plan:
    """Resolve what ``config`` builds: base image or Dockerfile, Features in install order.

    ``local_env`` is the only source for ``${localEnv:...}``; Berth passes the workspace
    owner's variables, never its own environment. ``private``: networks an admin allowed
    the engine to pull or fetch from (everything else non-public is refused).
    """
    local_env = dict(local_env or {})
    workspace = str(config.workspace)
    id_labels = {
        "devcontainer.local_folder": workspace,
        "devcontainer.config_file": str(config.path),
    }
    ctx = Context(
        local_workspace=workspace, local_env=local_env, devcontainer_id=devcontainer_id(id_labels)
    )
    folder = substitute(config.raw.get("workspaceFolder"), ctx) or default_workspace_folder(config)
    ctx = Context(
        local_workspace=workspace,
        container_workspace=posixpath.normpath(folder),
        local_env=local_env,
        devcontainer_id=ctx.devcontainer_id,
    )
    raw = substitute(config.raw, ctx)

    result = Plan(
        config=config,
        raw=raw,
        context=ctx,
        id_labels=id_labels,
        kind=config.kind,
        warnings=list(config.warnings),
    )
    if "initializeCommand" in raw:
        result.warnings.append(
            "initializeCommand is not run: it is meant for the developer's own machine, and "
            "Berth builds on a server where it would run with the server's rights"
        )
    if config.kind == "compose":
        _plan_compose(config, result, local_env, approvals or policy.Approvals(), private)
    elif result.kind == "image":
        result.image = raw["image"]
        policy.check_pull(result.image, "image", private, config.path)
    else:
        build = raw["build"]
        root = config.boundary
        named = config.folder / build["dockerfile"]
        where = {
            "file": config.path,
            "prop": "build.dockerfile",
            "line": config.line_of("dockerfile"),
        }
        result.dockerfile = inputs.inside(
            root, named, f"the Dockerfile {build['dockerfile']}", **where
        )
        result.dockerfile_text = inputs.read_text(
            root, result.dockerfile, f"the Dockerfile {build['dockerfile']}", **where
        )
        context = config.folder / build["context"] if "context" in build else named.parent
        result.build_context = inputs.inside(
            root,
            context,
            f"the build context {build.get('context', '.')}",
            file=config.path,
            prop="build.context",
            line=config.line_of("context"),
        )
        if not result.build_context.is_dir():
            raise ConfigError(
                f"the build context {build.get('context', '.')} is not a folder",
                file=config.path,
                property="build.context",
                line=config.line_of("context"),
            )
        result.build_args = {k: str(v) for k, v in (build.get("args") or {}).items()}
        result.target = build.get("target")
        _parse_build_options(config, build.get("options") or [], result)
        policy.check_fetches(result.dockerfile_text, result.build_args, private, result.dockerfile)

    policy.check(
        metadata.merge([metadata.config_entry(raw)]),
        raw.get("runArgs") or [],
        approvals or policy.Approvals(),
        file=config.path,
    )
    resolver = features_mod.Resolver(
        config.folder,
        config.workspace,
        feature_cache or DEFAULT_CACHE,
        fetch or functools.partial(oci.fetch, allowed=private),
        root=config.boundary,
    )
    result.features = features_mod.resolve(
        raw.get("features") or {}, resolver, raw.get("overrideFeatureInstallOrder")
    )
    return result


def _plan_compose(config, result: Plan, local_env, approvals, private) -> None:
    """The compose files read (app.devcontainer.compose), and the config's service as
    the image to run or the Dockerfile to build, as an image or Dockerfile config is."""
    project = compose.load(config, local_env, approvals)
    name = str(result.raw.get("service"))
    if name not in project.services:
        raise ConfigError(
            f"service {name!r} is not in the compose files (they have: "
            f"{', '.join(sorted(project.services))})",
            file=config.path,
            property="service",
            line=config.line_of("service"),
        )
    run_services = result.raw.get("runServices")
    project.started(name, run_services)  # every name exists, no circle
    service = project.services[name]
    result.compose, result.service = project, name
    result.warnings += project.warnings
    for other in project.services.values():
        if other.build:
            policy.check_fetches(
                other.build.dockerfile_text, other.build.args, private, other.build.dockerfile
            )
        else:
            policy.check_pull(other.image, f"services.{other.name}.image", private, config.path)
    if service.build:
        result.kind = "dockerfile"
        result.dockerfile = service.build.dockerfile
        result.dockerfile_text = service.build.dockerfile_text
        result.build_context = service.build.context
        result.build_args = dict(service.build.args)
        result.target = service.build.target
    else:
        result.kind = "image"
        result.image = service.image
