"""Templates: the built-in ones in devcontainers/, their parameters, limits and approvals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import peewee

from app.costs import resources  # noqa: F401  (templates.resources: what a workspace asks for)
from app.db import database
from app.devcontainer import Approvals
from app.devcontainer.config import read_jsonc
from app.durations import parse_duration
from app.models import Template, utcnow
from app.numbers import LARGEST, bounded
from app.workspaces import git

BUILTIN_DIR = Path(__file__).resolve().parent.parent.parent / "devcontainers"
CONFIG_FILE = "devcontainer.json"
PARAMETER_TYPES = ("number", "integer", "duration", "string", "boolean")


class ParameterError(Exception):
    """A workspace parameter is unknown or out of range; the message names it."""


@dataclass(frozen=True)
class Resolved:
    """The parameters a workspace runs with, after defaults and limits."""

    values: dict
    cpus: float
    memory_mb: int
    pids: int


def builtin_templates() -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sorted(BUILTIN_DIR.glob(f"*/{CONFIG_FILE}"))}


def sync_builtin() -> list[str]:
    """Create a record for every built-in template; refresh descriptions, keep admin edits."""
    names = []
    for name, folder in builtin_templates().items():
        raw, _ = read_jsonc(folder / CONFIG_FILE, CONFIG_FILE)
        meta = (raw.get("customizations") or {}).get("berth") or {}
        template = Template.get_or_none(Template.name == name)
        if template is None:
            try:
                with database.atomic():
                    Template.create(
                        name=name,
                        description=meta.get("description", raw.get("name", name)),
                        source_kind="builtin",
                        source=str(folder),
                        profile=meta.get("profile", "workspace"),
                        parameters=json.dumps(meta.get("parameters") or {}),
                        limits=json.dumps(meta.get("limits") or {}),
                        approvals="{}",
                    )
            except peewee.IntegrityError:
                pass  # another Berth process starting at the same time created it
        elif template.source_kind == "builtin":
            template.source = str(folder)  # the checkout may have moved
            template.description = meta.get("description", template.description)
            template.updated_at = utcnow()
            template.save()
        names.append(name)
    return names


def config_path(template: Template, data_dir: Path, allowed=()) -> tuple[Path, Path]:
    """The template's devcontainer.json and the folder its build inputs must stay in;
    a git template is cloned (once per ref) first."""
    folder = Path(template.source)
    if template.source_kind == "git":
        folder = data_dir / "templates" / f"{template.id}-{template.updated_at:%Y%m%d%H%M%S}"
        if not folder.exists():
            git.clone(template.source, template.git_ref, folder, allowed)
    return folder / (template.git_path or "") / CONFIG_FILE, folder


def approvals(template: Template | None) -> Approvals:
    granted = json.loads(template.approvals) if template else {}
    return Approvals(
        privileged=bool(granted.get("privileged")),
        capabilities=frozenset(c.upper() for c in granted.get("capabilities", [])),
        security_opts=frozenset(granted.get("security_opts", [])),
        host_mounts=bool(granted.get("host_mounts")),
        docker_socket=bool(granted.get("docker_socket")),
        host_namespaces=bool(granted.get("host_namespaces")),
        devices=bool(granted.get("devices")),
    )


def check_parameter(name: str, spec: dict, value):
    kind = spec.get("type", "string")
    unit = f" {spec['unit']}" if spec.get("unit") else ""
    if kind in ("number", "integer"):
        try:
            bounded(value, f"parameter {name!r}", low=-LARGEST)
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        if kind == "integer" and int(value) != value:
            raise ParameterError(f"parameter {name!r} must be a whole number, not {value!r}")
        if "min" in spec and value < spec["min"]:
            raise ParameterError(
                f"parameter {name!r}: {value}{unit} is below the minimum {spec['min']}{unit}"
            )
        if "max" in spec and value > spec["max"]:
            raise ParameterError(
                f"parameter {name!r}: {value}{unit} is above the maximum {spec['max']}{unit}"
            )
        return int(value) if kind == "integer" else float(value)
    if kind == "duration":
        return _check_duration(name, spec, str(value).strip())
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ParameterError(f"parameter {name!r} must be true or false, not {value!r}")
        return value
    if not isinstance(value, str):
        raise ParameterError(f"parameter {name!r} must be text, not {value!r}")
    return value


def _check_duration(name: str, spec: dict, value: str) -> str:
    """A duration within the spec's min and max; "0" (never) only if it allows it."""
    if value.lower() in ("0", "never"):
        if not spec.get("allow_never"):
            raise ParameterError(f"parameter {name!r}: this template does not allow 0 (never)")
        return "0"
    try:
        given = parse_duration(value)
        for bound, too in (("min", "shorter"), ("max", "longer")):
            limit = spec.get(bound)
            if limit and (
                given < parse_duration(limit) if bound == "min" else given > parse_duration(limit)
            ):
                raise ParameterError(
                    f"parameter {name!r}: {value} is {too} than this template allows ({limit})"
                )
    except ValueError as exc:
        raise ParameterError(f"parameter {name!r}: {exc}") from None
    return value


def resolve_parameters(template: Template | None, given: dict | None) -> Resolved:
    """Apply defaults and check types, ranges and the template's admin limits."""
    given = dict(given or {})
    schema = json.loads(template.parameters) if template else {}
    limits = json.loads(template.limits) if template else {}
    unknown = sorted(set(given) - set(schema))
    if unknown:
        known = ", ".join(sorted(schema)) or "none"
        raise ParameterError(f"unknown parameter {unknown[0]!r}; this template takes: {known}")
    values = {}
    for name, spec in schema.items():
        if name in given:
            values[name] = check_parameter(name, spec, given[name])
        elif "default" in spec:
            values[name] = spec["default"]
    cpus, memory = resources(values)
    if limits.get("max_cpu") and cpus > limits["max_cpu"]:
        raise ParameterError(
            f"parameter 'cpu': {cpus} is above this template's limit of {limits['max_cpu']}"
        )
    if limits.get("max_memory_mb") and memory > limits["max_memory_mb"]:
        raise ParameterError(
            f"parameter 'memory': {memory} MB is above this template's limit "
            f"of {limits['max_memory_mb']} MB"
        )
    if memory < 64:
        raise ParameterError(
            f"parameter 'memory': {memory} MB is too small to run a workspace (at least 64 MB)"
        )
    if cpus <= 0:
        raise ParameterError(f"parameter 'cpu': {cpus} must be more than 0")
    return Resolved(values=values, cpus=cpus, memory_mb=memory, pids=int(limits.get("pids", 4096)))


class TemplateError(Exception):
    """A template cannot be added or changed; the message names the field."""


class GrantRefused(TemplateError):
    """The caller may not grant this approval (it amounts to root on the host)."""


# Approvals that give a workspace root on the host whatever else holds: only admins
# grant them (authz right templates.approve_host).
HOST_ROOT_APPROVALS = ("privileged", "docker_socket", "host_mounts", "host_namespaces", "devices")
# Capabilities a template admin may grant: they act within the workspace's own
# namespaces and cgroup. Any other is the kernel's or the host's and needs an admin.
CONTAINED_CAPABILITIES = frozenset(
    {"NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_NICE", "IPC_LOCK", "MKNOD"}
)


# A parameter and the limit that caps it: a default or maximum above the cap would be
# offered to people and then refused when they create.
CAPPED_BY = {"cpu": "max_cpu", "memory": "max_memory_mb"}


def _check_within_limits(parameters: dict, limits: dict) -> None:
    for name, limit in CAPPED_BY.items():
        spec, cap = parameters.get(name), limits.get(limit)
        if not isinstance(spec, dict) or not isinstance(cap, int | float) or isinstance(cap, bool):
            continue
        for bound in ("default", "max"):
            value = spec.get(bound)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > cap:
                raise TemplateError(
                    f"parameters.{name}.{bound} is {value:g}, above limits.{limit} ({cap:g}): "
                    "people would be offered what their create is then refused"
                )


def host_root_grants(approvals: dict) -> set[str]:
    """The grants in ``approvals`` only an admin may give, named as in the refusal."""
    found = {key for key in HOST_ROOT_APPROVALS if approvals.get(key)}
    for cap in approvals.get("capabilities") or []:
        name = str(cap).strip().upper().removeprefix("CAP_")
        if name not in CONTAINED_CAPABILITIES:
            found.add(f"capability {name}")
    for opt in approvals.get("security_opts") or []:
        found.add(f"security option {opt}")
    return found


APPROVAL_KEYS = {
    "privileged",
    "capabilities",
    "security_opts",
    "host_mounts",
    "docker_socket",
    "host_namespaces",
    "devices",
}
LIMIT_DURATIONS = (
    "max_runtime",
    "warn_before",
    "dormant_after",
    "failed_cleanup_after",
    "expected_duration",  # anomaly alerts (app.workspaces.anomalies)
    "cpu_alert_after",
    "ide_idle_timeout",  # the browser IDE stops after this without a connection
)


LIMIT_NUMBERS = ("max_cpu", "max_memory_mb", "pids", "max_ttl_hours")


def _check_schema(parameters: dict) -> None:
    """A template's parameters: known types, and numbers, bounds and defaults a workspace
    can be made with (a default past what Berth can compute with would fail every create)."""
    for name, spec in parameters.items():
        if not isinstance(spec, dict):
            raise TemplateError(f"parameters.{name} must be an object")
        kind = spec.get("type", "string")
        if kind not in PARAMETER_TYPES:
            raise TemplateError(
                f"parameters.{name}.type {kind!r} is not one of {', '.join(PARAMETER_TYPES)}"
            )
        try:
            if kind in ("number", "integer"):
                for bound in ("min", "max"):
                    if bound in spec:
                        bounded(spec[bound], f"parameters.{name}.{bound}")
            if "default" in spec:
                check_parameter(name, spec, spec["default"])
        except (ValueError, ParameterError) as exc:
            raise TemplateError(f"parameters.{name}: {exc}") from None


def update(
    template: Template,
    *,
    parameters: dict | None = None,
    limits: dict | None = None,
    approvals: dict | None = None,
    enabled: bool | None = None,
    pricing: dict | None = None,
    may_grant_host: bool = False,
) -> Template:
    """Change what an admin may change; anything invalid is refused before any change.
    Without ``may_grant_host`` (an admin's right), approvals amounting to root on the host
    that the template does not already have are refused."""
    if pricing is not None:
        from app.costs import CostError, validate_pricing

        try:
            pricing = validate_pricing(pricing)
        except CostError as exc:
            raise TemplateError(str(exc)) from None
    for name, value in (("parameters", parameters), ("limits", limits), ("approvals", approvals)):
        if value is not None and not isinstance(value, dict):
            raise TemplateError(f"{name} must be a JSON object")
    if parameters is not None:
        _check_schema(parameters)
    for key in LIMIT_NUMBERS:
        if (limits or {}).get(key) is not None:
            try:
                bounded(limits[key], f"limits.{key}", low=0)
            except ValueError as exc:
                raise TemplateError(str(exc)) from None
    pool_size = (limits or {}).get("pool_size")
    if pool_size is not None and (
        isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 0 <= pool_size <= 100
    ):
        raise TemplateError("limits.pool_size must be a whole number from 0 to 100")
    for key in LIMIT_DURATIONS:
        if limits and limits.get(key) not in (None, "", 0, "0"):
            try:
                parse_duration(str(limits[key]))
            except ValueError as exc:
                raise TemplateError(f"limits.{key}: {exc}") from None
    unknown = set(approvals or {}) - APPROVAL_KEYS
    if unknown:
        raise TemplateError(
            f"unknown approval {sorted(unknown)[0]!r}; use {', '.join(sorted(APPROVAL_KEYS))}"
        )
    for key in ("capabilities", "security_opts"):
        value = (approvals or {}).get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise TemplateError(f"approvals.{key} must be a list of names")
    private = (limits or {}).get("egress_private")
    if private is not None:
        from app import destinations

        if not isinstance(private, list):
            raise TemplateError("limits.egress_private must be a list of addresses or networks")
        try:
            destinations.parse_networks(private)
        except ValueError as exc:
            raise TemplateError(f"limits.egress_private: {exc}") from None
        had = set(json.loads(template.limits or "{}").get("egress_private") or [])
        if set(map(str, private)) - had and not may_grant_host:
            raise GrantRefused(
                "only admins may allow private destinations (limits.egress_private): they "
                "reach this host's and its network's own services"
            )
    if approvals is not None and not may_grant_host:
        new = host_root_grants(approvals) - host_root_grants(json.loads(template.approvals))
        if new:
            raise GrantRefused(
                f"only admins may approve {', '.join(sorted(new))}: it amounts to root on the host"
            )
    if enabled is not None and not isinstance(enabled, bool):
        raise TemplateError("enabled must be true or false")
    _check_within_limits(
        parameters if parameters is not None else json.loads(template.parameters or "{}"),
        limits if limits is not None else json.loads(template.limits or "{}"),
    )
    for name, value in (("parameters", parameters), ("limits", limits), ("approvals", approvals)):
        if value is not None:
            setattr(template, name, json.dumps(value))
    if enabled is not None:
        template.enabled = enabled
    if pricing is not None:
        template.pricing = json.dumps(pricing)
    template.updated_at = utcnow()
    template.save()
    return template


def add(
    name: str,
    description: str,
    profile: str,
    source_kind: str,
    source: str,
    git_ref: str | None = None,
    git_path: str | None = None,
) -> Template:
    """Record a template from a git repository or an uploaded (already extracted) folder."""
    import re

    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name or "") or len(name) > 32:
        raise TemplateError(f"name {name!r} is not allowed: lowercase letters, digits and hyphens")
    if Template.select().where(Template.name == name).exists():
        raise TemplateError(f"a template named {name!r} already exists")
    if profile not in ("workspace", "agent"):
        raise TemplateError(f"profile {profile!r} must be workspace or agent")
    if git_path and (git_path.startswith("/") or ".." in Path(git_path).parts):
        raise TemplateError(f"path {git_path!r} must stay inside the repository")
    if source_kind == "upload" and not (Path(source) / (git_path or "") / CONFIG_FILE).is_file():
        raise TemplateError(f"the upload has no {CONFIG_FILE} at its top level")
    return Template.create(
        name=name,
        description=description or name,
        source_kind=source_kind,
        source=source,
        git_ref=git_ref or None,
        git_path=git_path or None,
        profile=profile,
        parameters=json.dumps(
            {
                "cpu": {"type": "number", "default": 2, "min": 0.25, "max": 4},
                "memory": {
                    "type": "integer",
                    "default": 4096,
                    "min": 256,
                    "max": 8192,
                    "unit": "MB",
                },
            }
        ),
        limits=json.dumps({"max_cpu": 4, "max_memory_mb": 8192, "pids": 4096}),
        approvals="{}",
    )
