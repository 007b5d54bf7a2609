"""Whether a workspace is still its owner's alone. Everyone who may use a workspace runs
as its one user: once someone else has run anything in it (an SSH login, an API exec or
file write, the IDE) or it was shared, they could have left something the owner's later
sessions run (a git hook, a shell rc file, a process). From then on, for the rest of the
workspace's life, Berth offers the owner's git credentials in it no more
(app.credentials.serve); the reason is recorded once, with who and when."""

from __future__ import annotations

from app.models import Workspace, stamp, utcnow


def used_by(ws: Workspace | int, user, how: str) -> None:
    """``user`` is about to ``how`` (run a command, open the IDE…) in the workspace: when
    they are not its owner, its owner's credentials are off from now on."""
    if not isinstance(ws, int) and (ws.owner_id == user.id or ws.credentials_off):
        return  # nothing to write (an exec's hot path asks this each time)
    ws_id = ws if isinstance(ws, int) else ws.id
    reason = f"{user.username} {how} at {stamp(utcnow())}"
    (
        Workspace.update(credentials_off=reason)
        .where(
            (Workspace.id == ws_id)
            & (Workspace.owner != user.id)
            & Workspace.credentials_off.is_null()
        )
        .execute()
    )


def shared(ws: Workspace, grantee: str) -> None:
    """The workspace is shared with ``grantee``: not its owner's alone from now on."""
    (
        Workspace.update(credentials_off=f"it was shared with {grantee} at {stamp(utcnow())}")
        .where((Workspace.id == ws.id) & Workspace.credentials_off.is_null())
        .execute()
    )


def restored(backup) -> str | None:
    """Why a workspace whose files come from ``backup`` (or None: a new one) is not its
    owner's alone: its files bring along whatever others could leave in them."""
    if backup is None:
        return None
    about = backup.meta
    if "credentials_off" not in about:
        return (
            f"its files come from the backup {backup.id}, made before Berth kept track of "
            "who else used a workspace"
        )
    if about["credentials_off"]:
        where = about["credentials_off"]
        return f"its files come from the backup {backup.id} of a workspace where {where}"
    return None


def reason(ws_id: int) -> str | None:
    """Why the owner's credentials are off in the workspace, or None."""
    found = Workspace.get_or_none(Workspace.id == ws_id)
    return found.credentials_off if found is not None else "the workspace is gone"
