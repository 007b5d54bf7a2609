"""Berth's security policy over a devcontainer config, separate from the parser.

A workspace config may not take rights over the host unless an admin approved its
template for that exception. Each refusal names the property and the rule.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dockerfile_parse import DockerfileParser

from app import destinations
from app.devcontainer import runargs
from app.devcontainer.errors import PolicyError

# What every workspace keeps once all else is dropped: sudo and apt need CHOWN,
# DAC_OVERRIDE, SETUID and SETGID (shared/notes/security.md, section 2.2).
DEFAULT_CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETUID",
    "SETGID",
    "AUDIT_WRITE",
)
# Capabilities a workspace may add without approval: Docker's defaults that cannot be
# used against the host or other containers (no NET_RAW, no MKNOD).
SAFE_CAPABILITIES = frozenset(DEFAULT_CAPABILITIES) | {
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETPCAP",
    "SYS_CHROOT",
}
SAFE_SECURITY_OPTS = frozenset(
    {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
)


@dataclass(frozen=True)
class Approvals:
    """Exceptions an admin granted a template."""

    privileged: bool = False
    capabilities: frozenset = field(default_factory=frozenset)
    security_opts: frozenset = field(default_factory=frozenset)
    host_mounts: bool = False
    docker_socket: bool = False
    host_namespaces: bool = False
    devices: bool = False


def _capability(name: str) -> str:
    name = name.strip().upper()
    return name[4:] if name.startswith("CAP_") else name


def _mount_fields(mount) -> dict:
    if isinstance(mount, dict):
        return {k: str(v) for k, v in mount.items()}
    fields = {}
    for part in mount.split(","):
        key, _, value = part.partition("=")
        fields[key.strip()] = value.strip()
    for alias, name in (("src", "source"), ("dst", "target"), ("destination", "target")):
        if alias in fields:
            fields.setdefault(name, fields[alias])
    return fields


def check_mount(mount, where: str, approvals: Approvals, file=None) -> None:
    fields = _mount_fields(mount)
    kind = fields.get("type", "volume")
    source = fields.get("source", "")
    if "docker.sock" in source and not approvals.docker_socket:
        raise PolicyError(
            where,
            f"mounting the Docker socket ({source}) gives root on the host; "
            "it needs an admin-approved template",
            file=file,
        )
    if kind == "bind" and not approvals.host_mounts:
        raise PolicyError(
            where,
            f"bind mounts of host paths ({source or '?'}) need an "
            "admin-approved template; use a named volume",
            file=file,
        )
    if kind not in ("bind", "volume", "tmpfs"):
        raise PolicyError(where, f"mount type {kind!r} is not allowed", file=file)
    # A volume driver's options can mount any host path (volume-opt=device=/etc,o=bind).
    driver = sorted(k for k in fields if k in ("volume-driver", "volume-opt", "volumeOptions"))
    if driver and not approvals.host_mounts:
        raise PolicyError(
            where,
            f"{driver[0]} can mount host paths; it needs an admin-approved template",
            file=file,
        )


def check(merged: dict, run_args: list[str], approvals: Approvals, file=None) -> runargs.RunArgs:
    """Raise PolicyError for the first setting ``approvals`` does not cover; return the
    parsed runArgs."""
    parsed = runargs.parse(run_args, file=file)
    if (merged.get("privileged") or parsed.privileged) and not approvals.privileged:
        raise PolicyError(
            "privileged",
            "privileged containers are root on the host; they need an admin-approved template",
            file=file,
        )
    for where, caps in (
        ("capAdd", merged.get("capAdd") or []),
        ("runArgs --cap-add", parsed.cap_add),
    ):
        for cap in caps:
            name = _capability(cap)
            if name == "ALL" or (
                name not in SAFE_CAPABILITIES and name not in approvals.capabilities
            ):
                raise PolicyError(
                    where,
                    f"capability {name} is not in the safe list "
                    f"({', '.join(sorted(SAFE_CAPABILITIES))}); it needs an "
                    "admin-approved template",
                    file=file,
                )
    for where, opts in (
        ("securityOpt", merged.get("securityOpt") or []),
        ("runArgs --security-opt", parsed.security_opt),
    ):
        for opt in opts:
            if opt not in SAFE_SECURITY_OPTS and opt not in approvals.security_opts:
                raise PolicyError(
                    where,
                    f"security option {opt!r} weakens isolation; it needs "
                    "an admin-approved template",
                    file=file,
                )
    for where, mode in (
        ("--network", parsed.network),
        ("--pid", parsed.pid),
        ("--ipc", parsed.ipc),
    ):
        if mode == "host" and not approvals.host_namespaces:
            raise PolicyError(
                f"runArgs {where}",
                f"{where} host shares the host's namespace; it needs an admin-approved template",
                file=file,
            )
        if where == "--network" and mode and mode != "host":
            raise PolicyError(
                "runArgs --network",
                "Berth places each workspace on its own network; --network cannot be set",
                file=file,
            )
    if parsed.devices and not approvals.devices:
        raise PolicyError(
            "runArgs --device", "host devices need an admin-approved template", file=file
        )
    if parsed.publish:
        raise PolicyError(
            "runArgs --publish",
            "workspaces publish no ports on the host; use "
            "forwardPorts, which Berth serves behind its login",
            file=file,
        )
    for mount in merged.get("mounts") or []:
        check_mount(mount, "mounts", approvals, file)
    for mount in parsed.mounts:
        check_mount(mount, "runArgs --mount", approvals, file)
    for mount in parsed.volume_mounts:
        check_mount(mount, "runArgs --volume", approvals, file)
    return parsed


# --- what the Docker engine itself fetches ---------------------------------------------------
# Pulls (FROM, COPY --from, "image") and ADD <url> are made by the engine from the host's
# own network, not from the build's: each destination is checked like any other Berth
# connects to (app.destinations), so a config cannot point the engine at the host's
# loopback, a cloud's metadata service or a private network.

_IMAGE_PROPERTY = "build.dockerfile"


def registry_of(reference: str) -> tuple[str, int] | None:
    """The registry (host, port) an image reference names, or None for a plain name
    (Docker Hub, or the engine's own mirror: the operator's choice, not the config's)."""
    name = reference.split("@", 1)[0]
    first, sep, _ = name.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        return None
    if first.startswith("["):
        host, _, rest = first[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = first.partition(":")
    return host, int(port) if port.isascii() and port.isdigit() else 443


# What the engine takes for an image id: it looks a bare hex word up as a prefix of the
# id of any image it holds (another person's build, with their repository in it) when no
# image is tagged with that name; "sha256:" and a prefix is an id anyway.
_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]+", re.IGNORECASE)


def check_pull(reference: str, where: str, allowed=(), file=None) -> None:
    if _IMAGE_ID.fullmatch(reference):
        raise PolicyError(
            where,
            f"{reference} names an image by its id on this engine, which may be anyone's "
            f"build there; name it by repository and tag ({reference}:latest for an image "
            "called so) or by name@sha256:digest",
            file=file,
        )
    registry = registry_of(reference)
    if registry is not None:
        _check_destination(*registry, where, f"pulling {reference}", allowed, file)


def _check_destination(host: str, port: int, where: str, what: str, allowed, file) -> None:
    try:
        destinations.resolve(host, port, allowed)
    except destinations.Unresolved:
        return  # the engine cannot reach it either; its own error says so
    except destinations.DestinationRefused as exc:
        raise PolicyError(
            where, f"{what} would make the Docker engine connect to {host}: {exc}", file=file
        ) from None


def check_fetches(dockerfile_text: str, build_args: dict, allowed=(), file=None) -> None:
    """Refuse a Dockerfile whose FROM, COPY --from or ADD <url> has the engine fetch from
    a destination Berth would not connect to (or one it cannot check)."""
    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile_text.encode()), build_args=build_args)
    stages = set()
    for item in parser.structure:
        parts = item["value"].split()
        if item["instruction"] == "FROM" and len(parts) >= 3 and parts[-2].lower() == "as":
            stages.add(parts[-1].lower())
    for reference in parser.parent_images:
        if reference.lower() not in stages:
            check_pull(reference, _IMAGE_PROPERTY, allowed, file)
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "COPY":
            for source in re.findall(r"--from=(\S+)", value):
                if source.lower() in stages or source.isdigit():
                    continue
                if "$" in source:
                    raise PolicyError(
                        _IMAGE_PROPERTY,
                        f"COPY --from={source}: an image named by a variable cannot be checked",
                        file=file,
                    )
                check_pull(source, _IMAGE_PROPERTY, allowed, file)
        elif instruction == "ADD":
            for source in _add_sources(value):
                if "://" not in source:
                    continue
                parts = urlsplit(source)
                if "$" in source or not parts.hostname:
                    raise PolicyError(
                        _IMAGE_PROPERTY,
                        f"ADD {source}: a URL built from variables cannot be checked; "
                        "download it in a RUN step (RUN steps run behind Berth's firewall)",
                        file=file,
                    )
                port = parts.port or (443 if parts.scheme == "https" else 80)
                _check_destination(
                    parts.hostname, port, _IMAGE_PROPERTY, f"ADD {source}", allowed, file
                )


def _add_sources(value: str) -> list[str]:
    text = value.strip()
    try:
        words = json.loads(text) if text.startswith("[") else shlex.split(text, posix=False)
    except ValueError:
        words = text.split()
    words = [str(w) for w in words if not str(w).startswith("--")]
    return words[:-1]  # the last is the destination
