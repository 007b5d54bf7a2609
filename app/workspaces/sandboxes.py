"""A sandbox's own API token: made for its owner, limited to it, and handed to it as the
file ``/run/berth/token`` (the workspace's keep-alive folder, which only its user reads)
and as ``BERTH_TOKEN`` in every API exec. A token made when the sandbox is created or
claimed from the warm pool; the older ones are revoked; all of them at deletion."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from app import accounts
from app.config import keepalive_root
from app.models import ApiToken, Workspace, utcnow

TOKEN_FILE = "token"  # noqa: S105  (a file name)
SCOPES = ["workspaces:read", "workspaces:write", "workspaces:exec"]


def _folder(data_dir: Path, ws: Workspace) -> Path:
    return keepalive_root(data_dir) / str(ws.id)


def issue(ws: Workspace, data_dir: Path) -> str:
    """A fresh token for the sandbox, written where it reads it; returns it."""
    revoke(ws)
    lifetime = (
        ws.ttl_expires_at - utcnow() + timedelta(minutes=5)
        if ws.ttl_expires_at
        else timedelta(days=1)
    )
    _, token = accounts.create_token(
        ws.owner,
        f"sandbox {ws.name}",
        max(lifetime, timedelta(minutes=5)),
        scopes=SCOPES,
        workspace=ws,
        actor="system",
    )
    folder = _folder(data_dir, ws)
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    owner = folder.stat()
    partial = folder / f".{TOKEN_FILE}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chown(partial, owner.st_uid, owner.st_gid)  # the workspace user, nobody else
    partial.replace(folder / TOKEN_FILE)
    return token


def revoke(ws: Workspace) -> None:
    for token in ApiToken.select().where(
        (ApiToken.workspace == ws) & ApiToken.revoked_at.is_null()
    ):
        accounts.revoke_token(token, actor="system")


def exec_env(ws: Workspace, data_dir: Path) -> dict[str, str]:
    """BERTH_TOKEN for a command run in the sandbox (empty when it has none)."""
    try:
        token = (_folder(data_dir, ws) / TOKEN_FILE).read_text().strip()
    except OSError:
        return {}
    return {"BERTH_TOKEN": token} if token else {}
