"""What the Docker runtime names and labels its objects: every one carries
``berth.managed=true``, ``berth.instance=<id>``, ``berth.workspace=<id>`` and
``berth.owner=<user>``, so reconciliation finds it and deletion leaves nothing. (A
network made ahead for the next workspace id has no owner label: none is known yet.)"""

from __future__ import annotations

import hashlib

from app.runtime import WorkspaceRef

LABEL_MANAGED = "berth.managed"
LABEL_INSTANCE = "berth.instance"
LABEL_WORKSPACE = "berth.workspace"
LABEL_OWNER = "berth.owner"
LABEL_ROLE = "berth.role"
LABEL_USER = "berth.remote_user"
LABEL_FOLDER = "berth.workspace_folder"
LABEL_SERVICE = "berth.service"  # a compose workspace's other service: its name
LABEL_ORDER = "berth.start_order"  # ... and when it starts (after what it depends on)
BRIDGE_PREFIX = "berth"  # every bridge interface of Berth's starts so (the firewall rule)


def labels(ws: WorkspaceRef) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_INSTANCE: ws.instance,
        LABEL_WORKSPACE: str(ws.id),
        LABEL_OWNER: ws.owner,
    }


def container_name(ws: WorkspaceRef) -> str:
    return f"berth-{ws.instance}-ws-{ws.id}"


def network_name(ws: WorkspaceRef) -> str:
    return workspace_network(ws.instance, ws.id)


def workspace_network(instance: str, workspace_id: int) -> str:
    return f"berth-{instance}-ws-{workspace_id}"


def bridge_name(ws: WorkspaceRef) -> str:
    """berth and 10 hex digits of a hash of the instance and the workspace id: interface
    names have at most 15 characters, too few for an 8-hex instance id and every
    workspace id (a cut name made workspace 123 collide with 12)."""
    digest = hashlib.blake2s(f"{ws.instance}/{ws.id}".encode(), digest_size=5).hexdigest()
    return f"{BRIDGE_PREFIX}{digest}"


def volume_name(ws: WorkspaceRef, role: str) -> str:
    return f"berth-{ws.instance}-ws-{ws.id}-{role}"


def workspace_id(found: dict | None) -> int:
    """The workspace a labelled object belongs to (0: the instance's own)."""
    value = (found or {}).get(LABEL_WORKSPACE, "0") or "0"
    return int(value) if value.isdigit() else 0
