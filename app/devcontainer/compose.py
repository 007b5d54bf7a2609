"""``compose``: a config's Docker Compose files, read as hostile data.

The files come from the repository, so they are not handed to a Compose implementation:
one would bind-mount any host path they name, join the host's network, read host files
through ``env_file`` and interpolate the server's own environment into them. They are
read with PyYAML into the part of the Compose spec a development container needs; several
files merge as Compose merges them; ``${VAR}`` takes its value from the project's
``.env`` file and the owner's variables only; and every property that cannot be honoured
is named in a clear error (or, when it only concerns the developer's machine, a warning).
The runtime then creates each service's container itself, under Berth's policy.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from app.devcontainer import inputs, policy
from app.devcontainer.errors import ConfigError, PolicyError

# Service properties, by what Berth does with them.
TAKEN = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "volumes",
    "working_dir", "user", "labels", "depends_on", "init", "tty", "stdin_open",
    "cap_add", "security_opt", "privileged", "hostname", "stop_signal",
}  # fmt: skip
# What only makes sense on a developer's own machine, or Berth decides itself.
IGNORED = {
    "ports": "ports are not published on the server; forward them (forwardPorts) instead",
    "expose": "every service of a workspace reaches the others on its own network",
    "container_name": "Berth names the containers of a workspace",
    "restart": "Berth restarts a workspace's containers with the engine",
    "networks": "every service is on the workspace's own network, by its service name",
    "healthcheck": "health checks are not run; depends_on waits for a service's start",
    "mem_limit": "the template's limits apply to every service",
    "memswap_limit": "the template's limits apply to every service",
    "cpus": "the template's limits apply to every service",
    "cpu_shares": "the template's limits apply to every service",
    "pids_limit": "the template's limits apply to every service",
    "deploy": "deploy settings are for a swarm",
    "logging": "Berth keeps each container's log with the engine's defaults",
    "stop_grace_period": "Berth stops a workspace with its own grace period",
}
TOP_LEVEL = {"version", "services", "volumes", "networks", "name"}
COMPOSE_LABEL_PREFIXES = ("berth.", "com.docker.compose.", "devcontainer.")
MAX_FILES = 8
MAX_SERVICES = 16  # each runs with the template's limits; quotas count each
# Everything one config's compose files read (files, .env, env_files, Dockerfiles) and
# what interpolation makes of them: a few KB of YAML must not make gigabytes in the worker.
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32  # YAML nesting
# PyYAML's parser reads about 100 KB a second: compose files are a few KB.
MAX_YAML_BYTES = 256 * 1024
SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


@dataclass(frozen=True)
class Volume:
    """A mount of a service. ``kind``: "bind" (``source`` a resolved host path),
    "volume" (``source`` the project's volume name), "anonymous" or "tmpfs"."""

    kind: str
    target: str
    source: str = ""
    read_only: bool = False


@dataclass
class ServiceBuild:
    context: Path
    dockerfile: Path
    dockerfile_text: str
    args: dict[str, str]
    target: str | None


@dataclass
class Service:
    name: str
    image: str | None = None
    build: ServiceBuild | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    volumes: list[Volume] = field(default_factory=list)
    working_dir: str | None = None
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    init: bool | None = None
    tty: bool = False
    stdin_open: bool = False
    cap_add: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    privileged: bool = False
    hostname: str | None = None
    stop_signal: str | None = None


@dataclass
class Project:
    name: str
    files: list[Path]
    directory: Path  # the first file's folder: relative paths start there
    services: dict[str, Service]
    warnings: list[str] = field(default_factory=list)

    def started(self, main: str, run_services: list[str] | None) -> list[str]:
        """The services ``up`` starts, each after what it depends on, ``main`` last of
        those it does not depend on: runServices (all services when absent) and main, and
        what they depend on."""
        wanted = list(self.services) if run_services is None else [*run_services, main]
        order: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in path:
                raise ConfigError(f"services depend on each other in a circle: {' -> '.join(path)}")
            if name not in self.services:
                raise ConfigError(f"there is no service {name!r} in the compose files")
            for dependency in self.services[name].depends_on:
                visit(dependency, (*path, name))
            order.append(name)

        for name in [w for w in wanted if w != main] + [main]:
            visit(name, ())
        return order


# --- reading and interpolating ------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", re.DOTALL)


class Budget:
    """Bytes one config's compose files may still read and make."""

    def __init__(self, total: int = MAX_BYTES):
        self.left = total

    def spend(self, size: int, where: str) -> None:
        self.left -= size
        if self.left < 0:
            raise ConfigError(
                f"{where}: the compose files and what they read come to more than "
                f"{MAX_BYTES // (1024 * 1024)} MB"
            )


def interpolate(value: str, variables: dict[str, str], where: str, budget=None) -> str:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+other}``, ``${VAR+other}`` and ``$$``.
    Each value put in is charged to ``budget`` before the string is made."""
    budget = budget or Budget()

    def replace(match: re.Match) -> str:
        made = _replace(match)
        budget.spend(len(made), where)
        return made

    def _replace(match: re.Match) -> str:
        if match.group(1):
            return "$"
        if match.group(3):
            return variables.get(match.group(3), "")
        braced = _BRACED.match(match.group(2))
        if not braced:
            raise ConfigError(f"{where}: invalid interpolation ${{{match.group(2)}}}")
        name, operator, argument = braced.groups()
        value = variables.get(name)
        if operator is None:
            return value or ""
        empty_counts = operator.startswith(":")
        unset = value is None or (empty_counts and value == "")
        kind = operator[-1]
        if kind == "-":
            return interpolate(argument, variables, where, budget) if unset else value
        if kind == "+":
            return "" if unset else interpolate(argument, variables, where, budget)
        if unset:
            raise ConfigError(f"{where}: {name} must be set ({argument or 'no value'})")
        return value

    return _VARIABLE.sub(replace, value)


def _interpolate_tree(node, variables: dict[str, str], where: str, budget: Budget, depth=0):
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, str):
        return interpolate(node, variables, where, budget)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables, where, budget, depth + 1) for item in node]
    if isinstance(node, dict):
        return {
            key: _interpolate_tree(value, variables, f"{where}.{key}", budget, depth + 1)
            for key, value in node.items()
        }
    return node


def _env_file_values(text: str) -> dict[str, str]:
    """KEY=VALUE lines as Compose reads .env and env_file: no export, no expansion;
    matching quotes around a value are taken off."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a key twice (Compose does) and YAML
    aliases (a billion laughs costs nothing to write)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases are not read (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ConfigError(
                    f"a key must be a word, not {type(key).__name__} "
                    f"(line {key_node.start_mark.line + 1})"
                )
            if key in seen:
                raise ConfigError(f"{key!r} is given twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(reader, path: Path, shown: str) -> dict:
    text = reader.read_yaml_text(path, f"the compose file {shown}")
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except RecursionError:
        raise ConfigError(f"the compose file {shown} is nested too deeply") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"the compose file {shown} is not valid YAML: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"the compose file {shown}: {exc.args[0]}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"the compose file {shown} must be a mapping at its top")
    return document


# --- merging ------------------------------------------------------------------------------


def _mapping(value, where: str) -> dict:
    """environment, labels and build args: a mapping, or a list of KEY=VALUE."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): value[k] for k in value}
    if isinstance(value, list):
        result = {}
        for item in value:
            key, sep, item_value = str(item).partition("=")
            result[key] = item_value if sep else None
        return result
    raise ConfigError(f"{where} must be a mapping or a list of KEY=VALUE")


def _volume_target(entry) -> str:
    if isinstance(entry, dict):
        return posixpath.normpath(str(entry.get("target", "")))
    parts = str(entry).split(":")
    return posixpath.normpath(parts[1] if len(parts) > 1 else parts[0])


def _merge_service(base: dict, override: dict, where: str) -> dict:
    for key, (kinds, what) in _KINDS.items():
        _expect(override.get(key), kinds, f"{where}.{key}", what)
    merged = dict(base)
    for key, value in override.items():
        if key in ("environment", "labels"):
            merged[key] = {
                **_mapping(base.get(key), f"{where}.{key}"),
                **_mapping(value, f"{where}.{key}"),
            }
        elif key == "build":
            old = base.get("build")
            old = {"context": old} if isinstance(old, str) else dict(old or {})
            new = {"context": value} if isinstance(value, str) else dict(value or {})
            if "args" in new:
                new["args"] = {
                    **_mapping(old.get("args"), f"{where}.build.args"),
                    **_mapping(new["args"], f"{where}.build.args"),
                }
            merged[key] = {**old, **new}
        elif key == "volumes":
            by_target = {_volume_target(v): v for v in base.get(key) or []}
            by_target.update({_volume_target(v): v for v in value or []})
            merged[key] = list(by_target.values())
        elif key in ("ports", "expose", "cap_add", "security_opt", "env_file", "depends_on"):
            old = base.get(key) or []
            new = value or []
            if isinstance(old, dict) or isinstance(new, dict):  # depends_on's long form
                old = list(old) if isinstance(old, dict) else old
                new = list(new) if isinstance(new, dict) else new
            old = [old] if isinstance(old, str) else list(old)
            new = [new] if isinstance(new, str) else list(new)
            merged[key] = old + [item for item in new if item not in old]
        else:
            merged[key] = value
    return merged


# --- the project --------------------------------------------------------------------------


def project_name(config, files: list[Path], dotenv: dict[str, str], named: str | None) -> str:
    """As the reference names it: the .env's COMPOSE_PROJECT_NAME, the files' ``name:``,
    ``<folder>_devcontainer`` when the first file is in .devcontainer, else the first
    file's folder; lower case, only ``-``, ``_``, letters and digits. (The reference also
    reads COMPOSE_PROJECT_NAME from the developer's shell; a server has none.)"""
    name = dotenv.get("COMPOSE_PROJECT_NAME") or named
    if not name:
        folder = files[0].parent
        if folder.name == ".devcontainer":
            name = f"{config.workspace.name}_devcontainer"
        else:
            name = folder.name
    return re.sub(r"[^-_a-z0-9]", "", name.lower())


class _Reader:
    """The files a config's compose files name, each read once (through the checked
    reader, inside the repository) and charged to the budget."""

    def __init__(self, root: Path, budget: Budget):
        self.root, self.budget, self.texts = root, budget, {}
        self.yaml_left = MAX_YAML_BYTES

    def read(self, path: Path, what: str) -> str:
        resolved = inputs.inside(self.root, path, what)
        if resolved not in self.texts:
            text = inputs.read_text(self.root, path, what)
            self.budget.spend(len(text), what)
            self.texts[resolved] = text
        return self.texts[resolved]

    def read_yaml_text(self, path: Path, what: str) -> str:
        text = inputs.read_text(self.root, path, what, limit=self.yaml_left)
        self.yaml_left -= len(text.encode())
        if self.yaml_left <= 0:
            raise ConfigError(f"the compose files come to more than {MAX_YAML_BYTES // 1024} KB")
        return text


def _expect(value, kinds, where: str, what: str):
    """``value`` if it is one of ``kinds`` (None passes), else a ConfigError naming it."""
    if value is None or (
        isinstance(value, kinds) and not (isinstance(value, bool) and bool not in _as_tuple(kinds))
    ):
        return value
    raise ConfigError(f"{where} must be {what}, not {type(value).__name__}")


def _as_tuple(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _strings(value, where: str) -> list[str]:
    """A string or a list of words (strings or numbers)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        return [str(v) for v in value]
    raise ConfigError(f"{where} must be a string or a list of strings")


def load(config, local_env: dict[str, str] | None = None, approvals=None) -> Project:
    """Read, interpolate, merge and check the config's compose files."""
    approvals = approvals or policy.Approvals()
    root = config.boundary
    listed = list(dict.fromkeys(_strings(config.raw.get("dockerComposeFile"), "dockerComposeFile")))
    if not listed:
        raise ConfigError("dockerComposeFile names no file", property="dockerComposeFile")
    if len(listed) > MAX_FILES:
        raise ConfigError(f"dockerComposeFile names more than {MAX_FILES} files")
    files = {}  # each file once, however it is spelt
    for name in listed:
        found = inputs.inside(
            root, config.folder / name, f"the compose file {name}", prop="dockerComposeFile"
        )
        files.setdefault(found, name)
    listed, files = list(files.values()), list(files)
    budget = Budget()
    reader = _Reader(root, budget)
    directory = files[0].parent
    dotenv_path = directory / ".env"
    dotenv: dict[str, str] = {}
    if os.path.lexists(dotenv_path):
        dotenv = _env_file_values(reader.read(dotenv_path, "the compose .env file"))
    variables = {**(local_env or {}), **dotenv}

    services: dict[str, dict] = {}
    top_volumes: dict[str, dict] = {}
    top_name = None
    warnings: list[str] = []
    for path, shown in zip(files, listed, strict=True):
        document = _read_yaml(reader, path, shown)
        for key in document:
            if str(key).startswith("x-"):
                continue
            if key not in TOP_LEVEL:
                raise ConfigError(
                    f"the compose file {shown}: top-level {key!r} is not supported "
                    f"(supported: {', '.join(sorted(TOP_LEVEL))})"
                )
        document = _interpolate_tree(
            {k: v for k, v in document.items() if not str(k).startswith("x-")},
            variables,
            shown,
            budget,
        )
        top_name = _expect(document.get("name"), str, f"{shown}: name", "a string") or top_name
        declared = _expect(document.get("volumes"), dict, f"{shown}: volumes", "a mapping")
        for name, volume in (declared or {}).items():
            top_volumes[str(name)] = (
                _expect(volume, dict, f"{shown}: volumes.{name}", "a mapping") or {}
            )
        if document.get("networks"):
            warnings.append(f"{shown}: networks: {IGNORED['networks']}")
        found = _expect(document.get("services"), dict, f"{shown}: services", "a mapping")
        for name, service in (found or {}).items():
            name = str(name)
            if not SERVICE_NAME.fullmatch(name):
                raise ConfigError(
                    f"{shown}: {name!r} is not a service name (letters, digits, '_', '.', '-'; "
                    "at most 63)"
                )
            if not isinstance(service, dict):
                raise ConfigError(f"{shown}: services.{name} must be a mapping")
            services[name] = _merge_service(services.get(name, {}), service, f"services.{name}")
            if len(services) > MAX_SERVICES:
                raise ConfigError(
                    f"the compose files define more than {MAX_SERVICES} services; each runs "
                    "with the template's limits"
                )

    name = project_name(config, files, dotenv, top_name)
    for volume_name, declared in top_volumes.items():
        extra = sorted(k for k in declared if k not in ("name", "labels"))
        if extra:
            raise PolicyError(
                f"volumes.{volume_name}.{extra[0]}",
                f"volumes.{volume_name}: {extra[0]} is not supported; the workspace's "
                "volumes are made by Berth (a driver or an external volume could reach "
                "host paths or another workspace's data)",
                file=config.path,
            )
    if not services:
        raise ConfigError("the compose files define no services", property="dockerComposeFile")
    project = Project(name=name, files=files, directory=directory, services={}, warnings=warnings)
    for service_name, raw in services.items():
        project.services[service_name] = _service(
            config, project, reader, service_name, raw, top_volumes, variables, approvals
        )
    return project


def _words(value, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ConfigError(f"{where} must be a string or a list")


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# What each taken property must be (checked before anything reads it).
_KINDS = {
    "image": (str, "a string"),
    "build": ((str, dict), "a path or a mapping"),
    "command": ((str, list), "a string or a list"),
    "entrypoint": ((str, list), "a string or a list"),
    "environment": ((dict, list), "a mapping or a list of KEY=VALUE"),
    "labels": ((dict, list), "a mapping or a list of KEY=VALUE"),
    "env_file": ((str, list), "a path or a list of paths"),
    "volumes": (list, "a list"),
    "working_dir": (str, "a path"),
    "user": ((str, int), "a user name or id"),
    "depends_on": ((list, dict), "a list or a mapping of services"),
    "init": (bool, "true or false"),
    "tty": (bool, "true or false"),
    "stdin_open": (bool, "true or false"),
    "privileged": (bool, "true or false"),
    "cap_add": (list, "a list"),
    "security_opt": (list, "a list"),
    "hostname": (str, "a string"),
    "stop_signal": (str, "a signal name"),
    "ports": (list, "a list"),
    "expose": (list, "a list"),
}


def _service(config, project, reader, name, raw, top_volumes, variables, approvals) -> Service:
    where = f"services.{name}"
    for key, (kinds, what) in _KINDS.items():
        _expect(raw.get(key), kinds, f"{where}.{key}", what)
    for key in raw:
        if key in TAKEN:
            continue
        if key in IGNORED:
            project.warnings.append(f"{where}.{key}: {IGNORED[key]}")
            continue
        if key in ("network_mode", "pid", "ipc", "userns_mode", "cgroup_parent", "devices",
                   "volumes_from", "sysctls", "ulimits", "extra_hosts", "dns", "links",
                   "external_links", "secrets", "configs", "profiles", "platform"):  # fmt: skip
            raise PolicyError(
                f"{where}.{key}",
                f"{where}.{key} is not supported: a workspace's services share its own "
                "network and nothing of the host or of another workspace",
                file=config.path,
            )
        raise ConfigError(
            f"{where}.{key} is not supported by Berth (supported: {', '.join(sorted(TAKEN))})",
            file=config.path,
            property=f"{where}.{key}",
        )
    if raw.get("image") is None and raw.get("build") is None:
        raise ConfigError(f"{where} needs an 'image' or a 'build'", property=where)
    service = Service(name=name)
    if raw.get("image") is not None:
        service.image = str(raw["image"])  # checked by the plan, which knows the allowed
    if raw.get("build") is not None:
        service.build = _build(config, project, reader, where, raw["build"])
    service.command = _words(raw.get("command"), f"{where}.command")
    service.entrypoint = _words(raw.get("entrypoint"), f"{where}.entrypoint")
    environment: dict = {}
    for env_file in dict.fromkeys(_strings(raw.get("env_file"), f"{where}.env_file")):
        text = reader.read(project.directory / env_file, f"{where}.env_file {env_file}")
        environment.update(_env_file_values(text))
    environment.update(_mapping(raw.get("environment"), f"{where}.environment"))
    for key, value in environment.items():
        if value is None:  # "KEY" alone: Compose takes it from its own environment
            value = variables.get(key)
        if value is not None:
            service.environment[key] = _text(value)
    for key, value in _mapping(raw.get("labels"), f"{where}.labels").items():
        if key.startswith(COMPOSE_LABEL_PREFIXES):
            raise PolicyError(
                f"{where}.labels",
                f"{where}.labels: {key} is a label Berth or Compose sets itself",
                file=config.path,
            )
        service.labels[key] = _text(value if value is not None else "")
    service.depends_on = [str(d) for d in raw.get("depends_on") or []]
    service.working_dir = raw.get("working_dir")
    if raw.get("user") is not None:
        service.user = str(raw["user"])
    service.init = raw.get("init")
    service.tty = bool(raw.get("tty"))
    service.stdin_open = bool(raw.get("stdin_open"))
    service.hostname = raw.get("hostname")
    service.stop_signal = raw.get("stop_signal")
    service.privileged = bool(raw.get("privileged"))
    service.cap_add = _strings(raw.get("cap_add"), f"{where}.cap_add")
    service.security_opt = _strings(raw.get("security_opt"), f"{where}.security_opt")
    policy.check(
        {
            "privileged": service.privileged,
            "capAdd": service.cap_add,
            "securityOpt": service.security_opt,
        },
        [],
        approvals,
        file=config.path,
    )
    for entry in raw.get("volumes") or []:
        service.volumes.append(_volume(config, project, where, entry, top_volumes, approvals))
    return service


def _build(config, project, reader, where, value) -> ServiceBuild:
    build = {"context": value} if isinstance(value, str) else dict(value)
    for key in ("context", "dockerfile", "target"):
        _expect(build.get(key), str, f"{where}.build.{key}", "a string")
    unknown = sorted(set(build) - {"context", "dockerfile", "args", "target"})
    if unknown:
        raise ConfigError(
            f"{where}.build.{unknown[0]} is not supported (supported: context, dockerfile, "
            "args, target)",
            property=f"{where}.build",
        )
    root = config.boundary
    context = inputs.inside(
        root, project.directory / str(build.get("context", ".")), f"{where}.build.context"
    )
    if not context.is_dir():
        raise ConfigError(f"{where}.build.context is not a folder", property=f"{where}.build")
    named = str(build.get("dockerfile", "Dockerfile"))
    dockerfile = inputs.inside(root, context / named, f"{where}.build.dockerfile {named}")
    text = reader.read(dockerfile, f"the Dockerfile of {where}")
    args = {k: _text(v) for k, v in _mapping(build.get("args"), f"{where}.build.args").items() if v}
    return ServiceBuild(context, dockerfile, text, args, build.get("target"))


def _volume(config, project, where, entry, top_volumes, approvals) -> Volume:
    _expect(entry, (str, dict), f"{where}.volumes", "a list of mounts")
    if isinstance(entry, dict):
        kind = entry.get("type", "volume")
        source = str(entry.get("source") or "")
        target = str(entry.get("target") or "")
        read_only = bool(entry.get("read_only"))
        extra = sorted(set(entry) - {"type", "source", "target", "read_only", "consistency"})
        if extra:
            raise PolicyError(
                f"{where}.volumes",
                f"{where}.volumes: {extra[0]} is not supported on a mount",
                file=config.path,
            )
    else:
        parts = str(entry).split(":")
        if len(parts) == 1:
            kind, source, target, mode = "volume", "", parts[0], ""
        else:
            source, target, mode = parts[0], parts[1], ":".join(parts[2:])
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        read_only = "ro" in mode.split(",")
    if not target.startswith("/"):
        raise ConfigError(f"{where}.volumes: {target!r} is not an absolute path in the container")
    target = posixpath.normpath(target)
    if kind == "tmpfs":
        return Volume("tmpfs", target)
    if kind == "volume":
        if not source:
            return Volume("anonymous", target, read_only=read_only)
        if source not in top_volumes:
            raise ConfigError(
                f"{where}.volumes: the volume {source!r} is not declared under 'volumes'",
                property=f"{where}.volumes",
            )
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}", source):
            raise ConfigError(f"{where}.volumes: {source!r} is not a volume name")
        return Volume("volume", target, source, read_only)
    if kind != "bind":
        raise PolicyError(
            f"{where}.volumes", f"{where}.volumes: type {kind!r} is not allowed", file=config.path
        )
    if source.startswith("~"):
        raise PolicyError(
            f"{where}.volumes",
            f"{where}.volumes: {source} is in the home folder of the server, not a workspace's",
            file=config.path,
        )
    resolved = Path(posixpath.normpath(project.directory / source))
    repository = Path(config.workspace)
    # What the engine would mount: a link in the repository may lead anywhere.
    real = Path(os.path.realpath(resolved))
    if resolved == repository or repository.is_relative_to(resolved):
        # The repository, or a folder holding it: on Berth the repository is the
        # workspace's volume, mounted where the repository appears (run.compose).
        return Volume("bind", target, str(resolved), read_only)
    if resolved.is_relative_to(repository) and not approvals.host_mounts:
        raise PolicyError(
            f"{where}.volumes",
            f"{where}.volumes: {source} is a folder inside the repository; a workspace's "
            "repository is one volume, so mount all of it (its root) or use a named volume",
            file=config.path,
        )
    policy.check_mount(
        {"type": "bind", "source": str(real), "target": target},
        f"{where}.volumes",
        approvals,
        config.path,
    )
    return Volume("bind", target, str(real), read_only)
