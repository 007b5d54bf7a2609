"""Workspaces in the browser: where each workspace's IDE and ports live on the apps
origin, who may open them, and where Caddy sends an authorized request.

Two ways to address a workspace on the apps origin (see ``Settings.apps_domain``):
  subdomains: ``<workspace>--<owner>.<domain>`` (IDE), ``<port>--<workspace>--<owner>.<domain>``
  paths:      ``/@<owner>/<workspace>/`` (IDE),    ``/@<owner>/<workspace>--<port>/``
Workspace names never hold "--", so both parse without ambiguity. Subdomains give every
workspace and port an origin of its own; with paths they share one (see docs/ide.md).

Ports are served through the workspace's code-server (``/proxy/<port>/``), which reaches
servers listening on the container's loopback too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from app import authz
from app.config import Settings
from app.db import write_transaction
from app.models import User, Workspace, WorkspacePort
from app.runtime.layout import CODE_SERVER_PORT
from app.states import Status as S

_NAME = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
_USER = r"[a-z][a-z0-9_-]*"
HOST_LABEL = re.compile(rf"^(?:(?P<port>\d{{1,5}})--)?(?P<ws>{_NAME})--(?P<owner>{_USER})$")
PATH_PREFIX = re.compile(rf"^/@(?P<owner>{_USER})/(?P<ws>{_NAME})(?:--(?P<port>\d{{1,5}}))?(?=/|$)")
RESERVED_PORTS = {CODE_SERVER_PORT}


class PortError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Target:
    owner: str
    workspace: str
    port: int | None = None  # None: the IDE

    @property
    def label(self) -> str:
        base = f"{self.workspace}--{self.owner}"
        return f"{self.port}--{base}" if self.port else base

    @property
    def prefix(self) -> str:
        """The path prefix in path mode ("" in subdomain mode is handled by callers)."""
        return f"/@{self.owner}/{self.workspace}" + (f"--{self.port}" if self.port else "")


def parse(settings: Settings, host: str, uri: str) -> tuple[Target, str] | None:
    """The target a request on the apps origin means, and the path (with query) left
    for the workspace; None when it names none."""
    path, _, query = uri.partition("?")
    if settings.apps_domain == "none":
        found = PATH_PREFIX.match(path)
        rest = path[found.end() :] if found else ""
    else:
        name = (host or "").rsplit(":", 1)[0].lower()
        suffix = "." + settings.apps_domain
        found = HOST_LABEL.match(name[: -len(suffix)]) if name.endswith(suffix) else None
        rest = path
    if not found:
        return None
    port = int(found["port"]) if found["port"] else None
    if port is not None and not 1 <= port <= 65535:
        return None
    return Target(found["owner"], found["ws"], port), (rest or "/") + (f"?{query}" if query else "")


def safe_path(rest: str) -> str | None:
    """``rest`` if it cannot climb out of the place it is mounted (no ".." segment,
    encoded or not), else None."""
    path = rest.partition("?")[0]
    segments = unquote(unquote(path)).replace("\\", "/").split("/")
    return None if ".." in segments else rest


def url(settings: Settings, target: Target, path: str = "/") -> str:
    origin = settings.apps_origin
    if settings.apps_domain == "none":
        return origin + target.prefix + path
    return origin.replace("{label}", target.label) + path


def target_of_url(settings: Settings, address: str) -> tuple[Target, str] | None:
    """The target of a full apps-origin URL, if it is one (guards redirects)."""
    parts = urlsplit(address)
    origin = urlsplit(settings.apps_origin.replace("{label}", "x"))
    if parts.scheme != origin.scheme or (parts.port or None) != (origin.port or None):
        return None
    if settings.apps_domain == "none" and parts.hostname != origin.hostname:
        return None
    return parse(
        settings,
        parts.netloc,
        parts.path + (f"?{parts.query}" if parts.query else ""),
    )


def find(target: Target) -> Workspace | None:
    return (
        Workspace.select(Workspace, User)
        .join(User)
        .where(
            (User.username == target.owner)
            & (Workspace.live_name == target.workspace)
            & (Workspace.status != S.DELETED)
        )
        .first()
    )


def may_open(user: User, ws: Workspace, port: int | None) -> bool:
    """Owner, admins and those it is shared with: the IDE and every port; every other
    signed-in person: ports shared with the whole instance."""
    if user.is_disabled:
        return False
    if authz.allows(user, ws, authz.USE):
        return True
    if port is None:
        return False
    return (
        WorkspacePort.select()
        .where(
            (WorkspacePort.workspace == ws) & (WorkspacePort.port == port) & WorkspacePort.shared
        )
        .exists()
    )


def port_row(ws: Workspace, port: int) -> WorkspacePort | None:
    return WorkspacePort.get_or_none((WorkspacePort.workspace == ws) & (WorkspacePort.port == port))


def ports(ws: Workspace) -> list[WorkspacePort]:
    return list(ws.ports.order_by(WorkspacePort.port))


def ports_of(ids: list[int]) -> dict[int, list[WorkspacePort]]:
    """The open ports of many workspaces, in one query."""
    found: dict[int, list[WorkspacePort]] = {}
    rows = WorkspacePort.select().where(WorkspacePort.workspace.in_(ids))
    for row in rows.order_by(WorkspacePort.port):
        found.setdefault(row.workspace_id, []).append(row)
    return found


def _check_port(port) -> int:
    if isinstance(port, bool) or not isinstance(port, int | str) or not str(port).isdigit():
        raise PortError(422, f"port {port!r} is not a number from 1 to 65535")
    number = int(port)
    if not 1 <= number <= 65535:
        raise PortError(422, f"port {number} is not a number from 1 to 65535")
    if number in RESERVED_PORTS:
        raise PortError(422, f"port {number} is the IDE's own port; open the IDE instead")
    return number


def open_port(
    ws: Workspace,
    port,
    shared: bool = False,
    label: str | None = None,
    allow_shared: bool = True,
) -> WorkspacePort:
    """Open (or change) a port; ``allow_shared`` is False in path mode, where every
    workspace shares one origin and a shared page could act as its visitors."""
    number = _check_port(port)
    if shared and not allow_shared:
        raise PortError(
            409,
            "sharing a port needs workspace subdomains (BERTH_APPS_DOMAIN): on a shared "
            "origin a shared page could act as its visitors in their own workspaces",
        )
    if label is not None and (not isinstance(label, str) or len(label) > 64):
        raise PortError(422, "label must be text of at most 64 characters")
    with write_transaction():
        row = port_row(ws, number)
        if row is None:
            row = WorkspacePort.create(
                workspace=ws, port=number, shared=bool(shared), label=label, source="user"
            )
        else:
            row.shared = bool(shared)
            row.label = label if label is not None else row.label
            row.save()
    return row


def close_port(ws: Workspace, port) -> None:
    number = _check_port(port)
    row = port_row(ws, number)
    if row is None:
        raise PortError(404, f"port {number} is not open in {ws.name}")
    if row.source == "config":
        raise PortError(
            409, f"port {number} comes from the devcontainer's forwardPorts; it stays open"
        )
    row.delete_instance()


def sync_config_ports(ws: Workspace, forward_ports: list, attributes: dict) -> list[int]:
    """Record the devcontainer's forwardPorts (numbers, or localhost:N) as open ports."""
    wanted = []
    for entry in forward_ports or []:
        text = str(entry)
        host, _, number = text.rpartition(":")
        if host not in ("", "localhost", "127.0.0.1") or not number.isdigit():
            continue
        if 1 <= int(number) <= 65535 and int(number) not in RESERVED_PORTS:
            wanted.append(int(number))
    with write_transaction():
        for number in wanted:
            label = (attributes or {}).get(str(number), {}).get("label")
            row = port_row(ws, number)
            if row is None:
                WorkspacePort.create(workspace=ws, port=number, source="config", label=label)
            elif row.source != "config":
                row.source = "config"
                row.save()
        WorkspacePort.delete().where(
            (WorkspacePort.workspace == ws)
            & (WorkspacePort.source == "config")
            & WorkspacePort.port.not_in(wanted or [0])
        ).execute()
    return wanted


def upstream_path(target: Target, rest: str) -> str:
    """What code-server is asked for: the IDE's own path, or its proxy for a port."""
    return f"/proxy/{target.port}{rest}" if target.port else rest


def urls(settings: Settings, ws: Workspace, rows: list | None = None) -> dict:
    """The browser URLs of the IDE and open ports; ``rows``: the ports, when read already."""
    owner = ws.owner.username
    rows = ports(ws) if rows is None else rows
    return {
        "ide": url(settings, Target(owner, ws.name)),
        "ports": {str(p.port): url(settings, Target(owner, ws.name, p.port)) for p in rows},
    }


def describe_port(
    settings: Settings, ws: Workspace, row: WorkspacePort, heard: set[int] | None = None
) -> dict:
    """The API's view of an open port; ``heard``: the ports listening now, when known."""
    return {
        "port": row.port,
        "label": row.label,
        "source": row.source,
        "shared": row.shared,
        "url": url(settings, Target(ws.owner.username, ws.name, row.port)),
        "listening": None if heard is None else row.port in heard,
    }
