"""Berth's security policy over a devcontainer config, separate from the parser.

A workspace config may not take rights over the host unless an admin approved its
template for that exception. Each refusal names the property and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
