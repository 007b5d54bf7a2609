"""Sharing a workspace with people and groups: they may use it (IDE, ports, SSH as
``<owner>.<workspace>``, exec) until the owner revokes it. Every change is audited."""

from __future__ import annotations

import peewee

from app import audit
from app.db import write_transaction
from app.models import Group, User, Workspace, WorkspaceShare
from app.workspaces import strangers


class ShareError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _target(ws: Workspace) -> str:
    return f"workspace:{ws.owner.username}.{ws.name}"


def _grantee(kind: str, name: str) -> User | Group:
    if kind == "user":
        found = User.get_or_none(User.username == (name or "").strip().lower())
    elif kind == "group":
        found = Group.get_or_none(Group.name == (name or "").strip().lower())
    else:
        raise ShareError(404, f"share with a 'user' or a 'group', not {kind!r}")
    if found is None:
        raise ShareError(422, f"there is no {kind} named {name!r}")
    return found


def _where(ws: Workspace, grantee: User | Group):
    column = WorkspaceShare.user if isinstance(grantee, User) else WorkspaceShare.group
    return (WorkspaceShare.workspace == ws) & (column == grantee)


def share(
    ws: Workspace, kind: str, name: str, *, actor: str, source_ip: str | None = None
) -> WorkspaceShare:
    grantee = _grantee(kind, name)
    if isinstance(grantee, User) and grantee.id == ws.owner_id:
        raise ShareError(422, f"{grantee.username} owns this workspace already")
    if ws.template is not None and ws.template.profile == "agent":
        # A sandbox holds its owner's token (/run/berth/token): whoever shares its shell
        # holds the token.
        raise ShareError(409, "agent sandboxes are not shared: a sandbox holds its owner's token")
    with write_transaction():
        row = WorkspaceShare.get_or_none(_where(ws, grantee))
        if row is None:
            row = WorkspaceShare.create(
                workspace=ws,
                user=grantee if kind == "user" else None,
                group=grantee if kind == "group" else None,
                created_by=actor,
            )
            strangers.shared(ws, f"{kind} {grantee.username if kind == 'user' else grantee.name}")
            audit.record(
                "share.add",
                actor=actor,
                source_ip=source_ip,
                target=_target(ws),
                **{kind: grantee.username if kind == "user" else grantee.name},
            )
    return row


def unshare(ws: Workspace, kind: str, name: str, *, actor: str, source_ip: str | None = None):
    grantee = _grantee(kind, name)
    with write_transaction():
        removed = WorkspaceShare.delete().where(_where(ws, grantee)).execute()
        if not removed:
            raise ShareError(404, f"workspace {ws.name!r} is not shared with {kind} {name!r}")
        audit.record(
            "share.remove",
            actor=actor,
            source_ip=source_ip,
            target=_target(ws),
            **{kind: grantee.username if kind == "user" else grantee.name},
        )


def shares_of(ws: Workspace) -> list[dict]:
    rows = (
        WorkspaceShare.select(WorkspaceShare, User, Group)
        .join(User, peewee.JOIN.LEFT_OUTER, on=(WorkspaceShare.user == User.id))
        .switch(WorkspaceShare)
        .join(Group, peewee.JOIN.LEFT_OUTER, on=(WorkspaceShare.group == Group.id))
        .where(WorkspaceShare.workspace == ws)
        .order_by(WorkspaceShare.id)
    )
    return [
        {
            "kind": "user" if row.user_id else "group",
            "name": row.user.username if row.user_id else row.group.name,
            "created_by": row.created_by,
            "created_at": row.created_at,
        }
        for row in rows
    ]
