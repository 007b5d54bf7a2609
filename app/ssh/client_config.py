"""``berth config-ssh``: Host entries for a user's workspaces in ~/.ssh/config, inside a
marked block that each run replaces (and nothing else), plus the gateway's host key in
a known_hosts file of Berth's own, so the first connection is already verified."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

# The gateway's fastest first (app.ssh.gateway.CIPHERS): OpenSSH would otherwise pick
# AES-CTR, its own first that the gateway offers, and move about 0.6x the bytes.
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr"


class ConfigSshError(Exception):
    pass


def _get(url: str, token: str, path: str):
    request = urllib.request.Request(  # noqa: S310 (fetch() admits http and https only)
        url.rstrip("/") + "/api/v2" + path, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = json.loads(detail)["error"]["message"]
        raise ConfigSshError(f"{url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigSshError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def fetch(url: str, token: str) -> tuple[dict, list[dict]]:
    """The gateway's address and host key, and the caller's own live workspaces."""
    if not url.startswith(("http://", "https://")):
        raise ConfigSshError(f"{url!r} is not an http:// or https:// URL of a Berth server")
    me = _get(url, token, "/me")
    gateway = _get(url, token, "/ssh")
    workspaces = [w for w in _get(url, token, "/workspaces") if w["owner"] == me["username"]]
    return gateway, workspaces


def markers(url: str) -> tuple[str, str]:
    return (
        f"# --- BEGIN berth {url} (written by berth config-ssh; do not edit inside) ---",
        f"# --- END berth {url} ---",
    )


def render(
    url: str,
    gateway: dict,
    workspaces: list[dict],
    known_hosts: Path,
    prefix: str,
    identity_file: str | None,
) -> str:
    begin, end = markers(url)
    alias = f"berth-{gateway['host']}-{gateway['port']}"
    lines = [begin]
    for ws in sorted(workspaces, key=lambda w: w["name"]):
        lines += [
            f"Host {prefix}{ws['name']}",
            f"  HostName {gateway['host']}",
            f"  Port {gateway['port']}",
            f"  User {ws['name']}",
            f"  HostKeyAlias {alias}",
            f"  UserKnownHostsFile {known_hosts}",
            "  StrictHostKeyChecking yes",
            f"  Ciphers {CIPHERS}",
        ]
        if identity_file:
            lines += [f"  IdentityFile {identity_file}", "  IdentitiesOnly yes"]
    lines.append(end)
    return "\n".join(lines) + "\n"


def replace_block(text: str, url: str, block: str) -> str:
    """``text`` with this server's block replaced (or appended); the rest untouched."""
    begin, end = markers(url)
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    if starts:
        start = starts[0]
        stops = [i for i, line in enumerate(lines) if i > start and line.rstrip("\n") == end]
        if not stops:
            raise ConfigSshError(f"the block for {url} has a BEGIN line but no END line; fix it")
        return "".join(lines[:start]) + block + "".join(lines[stops[0] + 1 :])
    separator = (
        "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    )
    return text + separator + block


def write(
    url: str,
    token: str,
    config: Path,
    prefix: str = "berth-",
    identity_file: str | None = None,
) -> list[str]:
    """Update ``config`` and the known_hosts file next to it; return the Host names."""
    gateway, workspaces = fetch(url, token)
    known_hosts = config.parent / "berth_known_hosts"
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    alias = f"berth-{gateway['host']}-{gateway['port']}"
    known = [
        line
        for line in (known_hosts.read_text().splitlines() if known_hosts.exists() else [])
        if line.split(" ", 1)[0] != alias
    ]
    known.append(f"{alias} {gateway['host_key']}")
    _atomic_write(known_hosts, "\n".join(known) + "\n")
    current = config.read_text() if config.exists() else ""
    block = render(url, gateway, workspaces, known_hosts, prefix, identity_file)
    _atomic_write(config, replace_block(current, url, block))
    return [f"{prefix}{w['name']}" for w in sorted(workspaces, key=lambda w: w["name"])]


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".berth-tmp")
    partial.write_text(text)
    os.chmod(partial, 0o600)
    os.replace(partial, path)
