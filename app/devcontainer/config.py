"""Finding, reading and validating devcontainer.json (JSONC, through json5)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import json5

from app.devcontainer import inputs
from app.devcontainer.errors import ConfigError

LIFECYCLE_HOOKS = (
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
)
ALL_HOOKS = ("initializeCommand", *LIFECYCLE_HOOKS)

_STRING, _BOOL, _OBJECT, _ARRAY, _NUMBER = "string", "boolean", "object", "array", "number"
_COMMAND = (_STRING, _ARRAY, _OBJECT)

# The properties of devcontainer.json (spec: devContainer.base.schema.json) and the JSON
# types each accepts. Anything else is kept but warned about.
PROPERTIES: dict[str, tuple[str, ...]] = {
    "$schema": (_STRING,),
    "name": (_STRING,),
    "image": (_STRING,),
    "build": (_OBJECT,),
    "dockerComposeFile": (_STRING, _ARRAY),
    "service": (_STRING,),
    "runServices": (_ARRAY,),
    "workspaceFolder": (_STRING,),
    "workspaceMount": (_STRING,),
    "mounts": (_ARRAY,),
    "containerEnv": (_OBJECT,),
    "remoteEnv": (_OBJECT,),
    "containerUser": (_STRING,),
    "remoteUser": (_STRING,),
    "updateRemoteUserUID": (_BOOL,),
    "userEnvProbe": (_STRING,),
    "overrideCommand": (_BOOL,),
    "shutdownAction": (_STRING,),
    "init": (_BOOL,),
    "privileged": (_BOOL,),
    "capAdd": (_ARRAY,),
    "securityOpt": (_ARRAY,),
    "runArgs": (_ARRAY,),
    "appPort": (_NUMBER, _STRING, _ARRAY),
    "forwardPorts": (_ARRAY,),
    "portsAttributes": (_OBJECT,),
    "otherPortsAttributes": (_OBJECT,),
    "features": (_OBJECT,),
    "overrideFeatureInstallOrder": (_ARRAY,),
    "waitFor": (_STRING,),
    "hostRequirements": (_OBJECT,),
    "customizations": (_OBJECT,),
    "secrets": (_OBJECT,),
    **{hook: _COMMAND for hook in ALL_HOOKS},
}
_LEGACY = {
    "dockerFile": (_STRING,),
    "context": (_STRING,),
    "extensions": (_ARRAY,),
    "settings": (_OBJECT,),
    "devPort": (_NUMBER,),
}
BUILD_PROPERTIES = {
    "dockerfile": (_STRING,),
    "context": (_STRING,),
    "args": (_OBJECT,),
    "target": (_STRING,),
    "options": (_ARRAY,),
    "cacheFrom": (_STRING, _ARRAY),
}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
ENUMS = {
    "userEnvProbe": ("none", "loginShell", "interactiveShell", "loginInteractiveShell"),
    "shutdownAction": ("none", "stopContainer", "stopCompose"),
    "waitFor": LIFECYCLE_HOOKS,
}


def json_type(value) -> str:
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int | float):
        return _NUMBER
    if isinstance(value, str):
        return _STRING
    if isinstance(value, list):
        return _ARRAY
    if isinstance(value, dict):
        return _OBJECT
    return "null"


@dataclass
class DevcontainerConfig:
    """A devcontainer.json as read from disk: values are still unsubstituted."""

    workspace: Path  # the local workspace folder (the repository root)
    path: Path  # the devcontainer.json file itself
    raw: dict
    text: str = ""
    warnings: list[str] = field(default_factory=list)
    # Where every build input must stay: the repository, or the template folder a
    # config came from (app.devcontainer.inputs).
    root: Path | None = None

    @property
    def boundary(self) -> Path:
        return self.root or self.workspace

    @property
    def folder(self) -> Path:
        """The folder relative paths in the config resolve against."""
        return self.path.parent

    @property
    def kind(self) -> str:
        if "dockerComposeFile" in self.raw:
            return "compose"
        if "dockerfile" in self.raw.get("build", {}):
            return "dockerfile"
        return "image"

    def line_of(self, prop: str) -> int | None:
        return line_of(self.text, prop)


def line_of(text: str, prop: str) -> int | None:
    """The line where ``prop`` (its last dotted part) is first written as a key, if found."""
    key = prop.rsplit(".", 1)[-1]
    match = re.search(r'["\']?' + re.escape(key) + r'["\']?\s*:', text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def discover(workspace: Path) -> list[Path]:
    """Config files in the spec's discovery order."""
    found = [workspace / ".devcontainer" / "devcontainer.json", workspace / ".devcontainer.json"]
    found = [path for path in found if path.is_file()]
    nested = workspace / ".devcontainer"
    if nested.is_dir():
        found += sorted(p for p in nested.glob("*/devcontainer.json") if p.is_file())
    return found


def read_jsonc(path: Path, what: str = "file", root: Path | None = None) -> tuple[dict, str]:
    """Parse a JSONC file (comments, trailing commas) into an object; errors name the line.
    With ``root``, the file must be a regular file inside it (app.devcontainer.inputs)."""
    text = inputs.read_text(root or path.parent, path, f"the {what}", file=path)
    try:
        value = json5.loads(text)
    except ValueError as exc:
        message = str(exc)
        match = re.match(r"<string>:(\d+) (.*)", message)
        if match:
            raise ConfigError(
                f"invalid JSON: {match.group(2)}", file=path, line=int(match.group(1))
            ) from None
        raise ConfigError(f"invalid JSON: {message}", file=path) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"the top level must be an object, not {json_type(value)}", file=path, line=1
        )
    return value, text


def load(workspace, config_path=None, root=None) -> DevcontainerConfig:
    """Read and validate the devcontainer.json of ``workspace``.

    ``config_path`` (relative to the workspace, or absolute) picks one explicitly;
    otherwise the spec's discovery order applies. ``root`` is the folder every build
    input must stay in: by default the workspace, or the config's own folder when the
    config is not in the workspace (a template's).
    """
    workspace = Path(workspace).resolve()
    if not workspace.is_dir():
        raise ConfigError(f"workspace folder {workspace} does not exist")
    if config_path:
        path = Path(config_path)
        path = path if path.is_absolute() else workspace / path
        if path.name not in ("devcontainer.json", ".devcontainer.json"):
            raise ConfigError(
                "a config file must be named devcontainer.json or .devcontainer.json", file=path
            )
    else:
        candidates = discover(workspace)
        if not candidates:
            raise ConfigError(
                f"no devcontainer.json in {workspace} (looked for .devcontainer/devcontainer.json, "
                ".devcontainer.json and .devcontainer/<name>/devcontainer.json)"
            )
        path = candidates[0]
    if root is None:
        root = workspace if Path(os.path.abspath(path)).is_relative_to(workspace) else path.parent
    root = Path(os.path.realpath(root))
    path = inputs.inside(root, path, "the devcontainer.json")
    raw, text = read_jsonc(path, "devcontainer.json", root)
    config = DevcontainerConfig(workspace=workspace, path=path, raw=raw, text=text, root=root)
    _migrate_legacy(config)
    _validate(config)
    return config


def _migrate_legacy(config: DevcontainerConfig) -> None:
    raw = config.raw
    if "dockerFile" in raw:
        raw.setdefault("build", {}).setdefault("dockerfile", raw.pop("dockerFile"))
    if "context" in raw:
        raw.setdefault("build", {}).setdefault("context", raw.pop("context"))
    move_to_vscode_customizations(raw)


def move_to_vscode_customizations(raw: dict) -> None:
    """Move legacy top-level extensions/settings/devPort into customizations.vscode."""
    legacy = {key: raw.pop(key) for key in ("extensions", "settings", "devPort") if key in raw}
    if not legacy:
        return
    vscode = raw.setdefault("customizations", {}).setdefault("vscode", {})
    if "extensions" in legacy:
        vscode["extensions"] = list(vscode.get("extensions", [])) + list(legacy["extensions"])
    if "settings" in legacy:
        vscode["settings"] = {**legacy["settings"], **vscode.get("settings", {})}
    if "devPort" in legacy:
        vscode.setdefault("devPort", legacy["devPort"])


def _fail(config: DevcontainerConfig, prop: str, message: str):
    raise ConfigError(message, file=config.path, property=prop, line=config.line_of(prop))


def _check_type(config, prop: str, value, allowed: tuple[str, ...]) -> None:
    if json_type(value) not in allowed:
        _fail(config, prop, f"must be {' or '.join(allowed)}, not {json_type(value)}")


def _validate(config: DevcontainerConfig) -> None:
    raw = config.raw
    for prop, value in raw.items():
        allowed = PROPERTIES.get(prop) or _LEGACY.get(prop)
        if allowed is None:
            config.warnings.append(
                f"{config.path}:{config.line_of(prop) or '?'}: unknown property {prop!r} is ignored"
            )
            continue
        _check_type(config, prop, value, allowed)
        if prop in ENUMS and value not in ENUMS[prop]:
            _fail(config, prop, f"{value!r} is not one of {', '.join(ENUMS[prop])}")
    for prop, value in raw.get("build", {}).items():
        if prop in BUILD_PROPERTIES:
            _check_type(config, f"build.{prop}", value, BUILD_PROPERTIES[prop])
        else:
            config.warnings.append(f"{config.path}: unknown property 'build.{prop}' is ignored")
    for prop in ("containerEnv", "build.args"):
        holder = raw.get("build", {}) if prop == "build.args" else raw
        for key, value in (holder.get(prop.split(".")[-1]) or {}).items():
            if not isinstance(value, str):
                _fail(config, f"{prop}.{key}", f"must be a string, not {json_type(value)}")
            if prop == "containerEnv" and not ENV_NAME.match(key):
                _fail(config, prop, f"{key!r} is not an environment variable name")
            if prop == "containerEnv" and "\0" in value:
                _fail(config, f"{prop}.{key}", "a value may not hold a NUL character")
    for key, value in (raw.get("remoteEnv") or {}).items():
        if value is not None and not isinstance(value, str):
            _fail(config, f"remoteEnv.{key}", f"must be a string or null, not {json_type(value)}")
    for prop in ("capAdd", "securityOpt", "runArgs", "overrideFeatureInstallOrder", "runServices"):
        for item in raw.get(prop, []):
            if not isinstance(item, str):
                _fail(config, prop, f"every entry must be a string, found {json_type(item)}")
    for item in raw.get("mounts", []):
        if isinstance(item, dict):
            if "target" not in item or "type" not in item:
                _fail(config, "mounts", "a mount object needs 'type' and 'target'")
        elif not isinstance(item, str):
            _fail(
                config,
                "mounts",
                f"every mount must be a string or an object, not {json_type(item)}",
            )
    for item in raw.get("forwardPorts", []):
        if not isinstance(item, int | str) or isinstance(item, bool):
            _fail(config, "forwardPorts", f"entries must be numbers or 'host:port', not {item!r}")
    for hook in ALL_HOOKS:
        if hook in raw:
            validate_command(raw[hook], lambda message, hook=hook: _fail(config, hook, message))
    if not any(
        key in raw for key in ("image", "dockerComposeFile")
    ) and "dockerfile" not in raw.get("build", {}):
        raise ConfigError(
            "the config needs one of 'image', 'build.dockerfile' or 'dockerComposeFile'",
            file=config.path,
        )
    if "dockerComposeFile" in raw and "service" not in raw:
        _fail(config, "service", "a dockerComposeFile config must name its 'service'")


def validate_command(value, fail) -> None:
    """Check the string / array / object-of-either forms of a lifecycle command."""
    if isinstance(value, str):
        return
    if isinstance(value, list):
        if not all(isinstance(part, str) for part in value):
            fail("an array command must hold only strings")
        return
    if isinstance(value, dict):
        for name, command in value.items():
            if not isinstance(command, str | list) or (
                isinstance(command, list) and not all(isinstance(p, str) for p in command)
            ):
                fail(f"the parallel command {name!r} must be a string or an array of strings")
        return
    fail(f"must be a string, an array or an object, not {json_type(value)}")
