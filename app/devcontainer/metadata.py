"""The ``devcontainer.metadata`` image label: its entries and how they merge.

The label is a JSON array: the base image's entries, one per Feature in install order,
then one for devcontainer.json. Values are stored unsubstituted.
"""

from __future__ import annotations

import json
import re

from app.devcontainer.config import LIFECYCLE_HOOKS

LABEL = "devcontainer.metadata"

CONFIG_PROPERTIES = (
    *LIFECYCLE_HOOKS,
    "waitFor",
    "customizations",
    "mounts",
    "containerEnv",
    "containerUser",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "remoteUser",
    "userEnvProbe",
    "remoteEnv",
    "overrideCommand",
    "portsAttributes",
    "otherPortsAttributes",
    "forwardPorts",
    "shutdownAction",
    "updateRemoteUserUID",
    "hostRequirements",
)
FEATURE_PROPERTIES = (
    *LIFECYCLE_HOOKS,
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "entrypoint",
    "mounts",
    "customizations",
)
_LAST_WINS = (
    "waitFor",
    "remoteUser",
    "containerUser",
    "userEnvProbe",
    "otherPortsAttributes",
    "shutdownAction",
)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(tb|gb|mb|kb)?\s*$", re.IGNORECASE)


def read_label(value: str | None) -> list[dict]:
    """The entries of a label value (a single object is accepted too)."""
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        return []
    entries = parsed if isinstance(parsed, list) else [parsed]
    return [entry for entry in entries if isinstance(entry, dict)]


def config_entry(raw: dict) -> dict:
    return {key: raw[key] for key in CONFIG_PROPERTIES if key in raw}


def feature_entry(user_id: str, feature_metadata: dict) -> dict:
    entry = {"id": user_id}
    entry.update(
        {key: feature_metadata[key] for key in FEATURE_PROPERTIES if key in feature_metadata}
    )
    return entry


def compose_label(
    base_entries: list[dict], feature_entries: list[dict], config: dict
) -> list[dict]:
    entries = [*base_entries, *feature_entries, config]
    return [entry for entry in entries if entry]


def mount_target(mount) -> str | None:
    if isinstance(mount, dict):
        return mount.get("target")
    for part in mount.split(","):
        key, _, value = part.partition("=")
        if key.strip() in ("target", "dst", "destination"):
            return value.strip()
    return None


def size_in_bytes(value) -> int:
    if isinstance(value, int | float):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        return 0
    power = {"kb": 1, "mb": 2, "gb": 3, "tb": 4}.get((match.group(2) or "").lower(), 0)
    return int(float(match.group(1)) * 1024**power)


def _union(lists) -> list | None:
    merged: list = []
    for items in lists:
        for item in items or []:
            if item not in merged:
                merged.append(item)
    return merged or None


def _mounts(entries: list[dict]) -> list | None:
    seen: set = set()
    kept = []
    for mount in reversed([m for e in entries for m in (e.get("mounts") or [])]):
        target = mount_target(mount)
        if target in seen:
            continue
        seen.add(target)
        kept.append(mount)
    return list(reversed(kept)) or None


def _forward_ports(entries: list[dict]) -> list | None:
    ports: list = []
    for entry in entries:
        for port in entry.get("forwardPorts") or []:
            key = f"localhost:{port}" if isinstance(port, int) else port
            if key not in ports:
                ports.append(key)
    return [int(p[10:]) if re.fullmatch(r"localhost:\d+", p) else p for p in ports] or None


def _host_requirements(entries: list[dict]) -> dict | None:
    found = [e["hostRequirements"] for e in entries if isinstance(e.get("hostRequirements"), dict)]
    if not found:
        return None
    cpus = max((r.get("cpus") or 0) for r in found)
    memory = max(size_in_bytes(r.get("memory") or 0) for r in found)
    storage = max(size_in_bytes(r.get("storage") or 0) for r in found)
    gpu = next((r["gpu"] for r in reversed(found) if r.get("gpu")), None)
    merged = {
        "cpus": cpus,
        "memory": str(memory) if memory else None,
        "storage": str(storage) if storage else None,
        "gpu": gpu,
    }
    return {key: value for key, value in merged.items() if value}


def merge(entries: list[dict]) -> dict:
    """Merge label entries as the spec says; the result uses plural keys for hook lists."""
    merged: dict = {
        "init": any(e.get("init") for e in entries),
        "privileged": any(e.get("privileged") for e in entries),
        "capAdd": _union(e.get("capAdd") for e in entries),
        "securityOpt": _union(e.get("securityOpt") for e in entries),
        "entrypoints": [e["entrypoint"] for e in entries if e.get("entrypoint")] or None,
        "mounts": _mounts(entries),
        "remoteEnv": {k: v for e in entries for k, v in (e.get("remoteEnv") or {}).items()},
        "containerEnv": {k: v for e in entries for k, v in (e.get("containerEnv") or {}).items()},
        "portsAttributes": {
            k: v for e in entries for k, v in (e.get("portsAttributes") or {}).items()
        },
        "forwardPorts": _forward_ports(entries),
        "hostRequirements": _host_requirements(entries),
    }
    customizations: dict = {}
    for entry in entries:
        for tool, value in (entry.get("customizations") or {}).items():
            customizations.setdefault(tool, []).append(value)
    merged["customizations"] = customizations or None
    for hook in LIFECYCLE_HOOKS:
        merged[hook + "s"] = [
            {"origin": entry.get("id", "devcontainer.json"), "command": entry[hook]}
            for entry in entries
            if entry.get(hook)
        ]
    for key in _LAST_WINS:
        merged[key] = next((e[key] for e in reversed(entries) if e.get(key)), None)
    for key in ("overrideCommand", "updateRemoteUserUID"):
        merged[key] = next(
            (e[key] for e in reversed(entries) if isinstance(e.get(key), bool)), None
        )
    return merged


def vscode_customizations(merged: dict) -> dict:
    """Extensions (in order, without repeats) and settings (later wins) for the IDE."""
    extensions: list[str] = []
    settings: dict = {}
    for value in (merged.get("customizations") or {}).get("vscode", []):
        for extension in value.get("extensions") or []:
            if extension not in extensions:
                extensions.append(extension)
        settings.update(value.get("settings") or {})
    return {"extensions": extensions, "settings": settings}
