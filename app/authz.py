"""Who may do what: the one place that answers it, for the web pages, the API, the apps
origin and the SSH gateway alike.

Instance-wide rights come from the role. Rights on a workspace come from being its owner,
an admin, an auditor (read only), or someone it is shared with (directly or through a
group): they may read and *use* it (IDE, ports, SSH, exec, starting it by using it) but
not manage it (stop, rebuild, delete, share, change its rules).
"""

from __future__ import annotations

import peewee

from app.models import GroupMember, User, Workspace, WorkspaceShare

# Instance-wide rights per role.
ROLE_RIGHTS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "users.manage",
            "templates.manage",
            # Approvals that amount to root on the host (privileged, the Docker socket,
            # host paths, host namespaces, devices, kernel-level capabilities).
            "templates.approve_host",
            "settings.manage",
            "audit.read",
            "workspaces.create",
            "workspaces.read_all",
            "workspaces.manage_all",
            "metrics.read",
        }
    ),
    "template-admin": frozenset({"templates.manage", "workspaces.create"}),
    "member": frozenset({"workspaces.create"}),
    "auditor": frozenset({"audit.read", "workspaces.read_all", "metrics.read"}),
}

# Rights on one workspace, from weakest to strongest.
READ, USE, MANAGE = "read", "use", "manage"
_LEVELS = {READ: 1, USE: 2, MANAGE: 3}


def can(user: User, right: str) -> bool:
    """Whether ``user``'s role grants the instance-wide ``right``."""
    return not user.is_disabled and right in ROLE_RIGHTS.get(user.role, frozenset())


def shared_with(user: User):
    """The ids of workspaces shared with ``user`` or one of their groups (a subquery)."""
    groups = GroupMember.select(GroupMember.group).where(GroupMember.user == user)
    return WorkspaceShare.select(WorkspaceShare.workspace).where(
        (WorkspaceShare.user == user) | WorkspaceShare.group.in_(groups)
    )


def workspace_filter(user: User) -> peewee.Expression | None:
    """A condition on Workspace for the ones ``user`` may see (None: all of them)."""
    if can(user, "workspaces.read_all"):
        return None
    return (Workspace.owner == user) | Workspace.id.in_(shared_with(user))


def level(user: User, ws: Workspace) -> str | None:
    """The strongest right ``user`` has on ``ws``: manage, use, read, or None."""
    if user.is_disabled:
        return None
    if ws.owner_id == user.id or can(user, "workspaces.manage_all"):
        return MANAGE
    if (
        Workspace.select()
        .where((Workspace.id == ws.id) & Workspace.id.in_(shared_with(user)))
        .exists()
    ):
        return USE
    if can(user, "workspaces.read_all"):
        return READ
    return None


def allows(user: User, ws: Workspace, needed: str) -> bool:
    found = level(user, ws)
    return found is not None and _LEVELS[found] >= _LEVELS[needed]
