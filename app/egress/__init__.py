"""Egress control for sandboxes: which workspaces have it, and what each may reach.

A workspace's egress is controlled when its template is an agent sandbox or its template
limits carry ``egress_allow`` (a human template may opt in). It may reach the hosts of
its template's ``egress_allow`` and its own (``Workspace.egress_allow``), nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import socket

from app import destinations
from app.egress import gateway
from app.egress.gateway import AllowlistError, Rule, parse_allowlist
from app.models import Workspace

__all__ = [
    "AllowlistError",
    "controlled",
    "entries",
    "private_networks",
    "rules_for",
    "template_networks",
    "validate",
]


def _template_entries(ws: Workspace) -> list[str] | None:
    if ws.template is None:
        return None
    limits = json.loads(ws.template.limits or "{}")
    return limits.get("egress_allow")


def controlled(ws: Workspace) -> bool:
    return bool(ws.template) and (
        ws.template.profile == "agent" or _template_entries(ws) is not None
    )


def entries(ws: Workspace) -> dict[str, list[str]]:
    return {
        "template": list(_template_entries(ws) or []),
        "workspace": json.loads(ws.egress_allow) if ws.egress_allow else [],
    }


def rules_for(ws: Workspace) -> list[Rule]:
    found = entries(ws)
    return parse_allowlist(found["template"] + found["workspace"])


def private_networks(ws: Workspace) -> list:
    """Private networks an admin allowed on the workspace's template (limits.egress_private)."""
    return template_networks(ws.template)


def template_networks(template) -> list:
    if template is None:
        return []
    return destinations.parse_networks(
        json.loads(template.limits or "{}").get("egress_private") or []
    )


def validate(value, allowed=()) -> list[str]:
    """A workspace allowlist from a request: refused with the bad entry named. An address
    that is not public (or localhost), unless in the template's ``allowed`` private
    networks, is refused here already; any name is checked again after it resolves, at
    each connection."""
    rules = parse_allowlist(value)
    for rule in rules:
        host = rule.host.removeprefix("*.")
        if host == "localhost" or host.endswith(".localhost"):
            raise AllowlistError(f"{rule.host!r} is this machine; {PRIVATE_RULE}")
        if host == gateway.BERTH_ALIAS:
            raise AllowlistError(f"{host!r} is Berth itself, which a sandbox always reaches")
        address = _numeric_address(host)
        if address is None:
            continue
        reason = destinations.why_refused(address, allowed)
        if reason:
            raise AllowlistError(f"{reason}; {PRIVATE_RULE}")
    return [str(v).strip().lower() for v in value or []]


def _numeric_address(host: str):
    """An address written with digits in any form the resolver takes (127.1, 2130706433,
    0x7f.0.0.1, IPv6), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


PRIVATE_RULE = (
    "only an admin may allow a private destination, on a template (limits.egress_private)"
)
