"""Variable substitution in devcontainer.json values (``${localEnv:VAR}`` and friends).

``localEnv`` resolves against an explicit mapping the caller passes, never against this
process's environment: a repository's config must not be able to read Berth's secrets.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from app.devcontainer.errors import ConfigError

_PATTERN = re.compile(r"\$\{(.*?)\}")
_BASE32 = "0123456789abcdefghijklmnopqrstuv"


@dataclass(frozen=True)
class Context:
    local_workspace: str
    container_workspace: str = ""
    local_env: dict = field(default_factory=dict)
    devcontainer_id: str | None = None
    container_env: dict | None = None  # known only once the container runs

    def with_container_env(self, env: dict) -> Context:
        return replace(self, container_env=dict(env))


def devcontainer_id(id_labels: dict[str, str]) -> str:
    """The spec's ``${devcontainerId}``: SHA-256 of the sorted id labels, in base 32, 52 chars."""
    payload = json.dumps(id_labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    number = int.from_bytes(hashlib.sha256(payload.encode()).digest(), "big")
    digits = ""
    while number:
        number, remainder = divmod(number, 32)
        digits = _BASE32[remainder] + digits
    return digits.rjust(52, "0")


def _replace_one(match: re.Match, ctx: Context) -> str:
    name, *args = match.group(1).split(":")
    if name in ("localEnv", "env"):
        if not args or not args[0]:
            raise ConfigError(f"{match.group(0)} needs a variable name, like ${{localEnv:HOME}}")
        value = ctx.local_env.get(args[0])
        return value if value is not None else (args[1] if len(args) > 1 else "")
    if name == "containerEnv":
        if ctx.container_env is None or not args:
            return match.group(0)
        value = ctx.container_env.get(args[0])
        return value if value is not None else (args[1] if len(args) > 1 else "")
    if name == "localWorkspaceFolder":
        return ctx.local_workspace
    if name == "localWorkspaceFolderBasename":
        return PurePosixPath(ctx.local_workspace).name
    if name == "containerWorkspaceFolder" and ctx.container_workspace:
        return ctx.container_workspace
    if name == "containerWorkspaceFolderBasename" and ctx.container_workspace:
        return PurePosixPath(ctx.container_workspace).name
    if name == "devcontainerId" and ctx.devcontainer_id:
        return ctx.devcontainer_id
    return match.group(0)  # unknown or not yet known: left verbatim, as the reference does


def substitute(value, ctx: Context):
    """Substitute inside every string value of ``value`` (keys are left alone)."""
    if isinstance(value, str):
        return _PATTERN.sub(lambda m: _replace_one(m, ctx), value)
    if isinstance(value, list):
        return [substitute(item, ctx) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, ctx) for key, item in value.items()}
    return value
