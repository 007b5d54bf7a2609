"""A sandbox's own API token: made for its owner, limited to it, and handed to it as the
file ``/run/berth/token`` (written through the engine into the sandbox's own tmpfs, which
only its user reads) and as ``BERTH_TOKEN`` in every API exec. A token is made when the
sandbox is created, started or claimed from the warm pool; the older ones are revoked;
all of them at deletion.

The token is derived from a nonce kept with its row and the instance's secret key, so
the web app can give it to each exec again while only its hash is stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

from app import accounts
from app.models import ApiToken, Workspace, utcnow

TOKEN_PATH = "/run/berth/token"  # noqa: S105  (a file name)
SCOPES = ["workspaces:read", "workspaces:write", "workspaces:exec"]


def _derive(secret_key: str, ws_id: int, nonce: str) -> str:
    mac = hmac.new(
        secret_key.encode(), f"berth-sandbox-token|{ws_id}|{nonce}".encode(), hashlib.sha256
    ).digest()
    return accounts.TOKEN_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issue(ws: Workspace, secret_key: str) -> str:
    """A fresh token for the sandbox (the older ones revoked); returns it."""
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
        derive=lambda nonce: _derive(secret_key, ws.id, nonce),
    )
    return token


def revoke(ws: Workspace) -> None:
    live = ApiToken.select().where((ApiToken.workspace == ws) & ApiToken.revoked_at.is_null())
    for token in list(live):  # read before writing (app.workspaces.pool.refill)
        accounts.revoke_token(token, actor="system")


def exec_env(ws: Workspace, secret_key: str) -> dict[str, str]:
    """BERTH_TOKEN for a command run in the sandbox (empty when it has none)."""
    row = (
        ApiToken.select()
        .where(
            (ApiToken.workspace == ws)
            & ApiToken.revoked_at.is_null()
            & ApiToken.nonce.is_null(False)
        )
        .order_by(ApiToken.id.desc())
        .first()
    )
    if row is None or row.status() != "active":
        return {}
    return {"BERTH_TOKEN": _derive(secret_key, ws.id, row.nonce)}
