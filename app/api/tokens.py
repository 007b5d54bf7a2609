"""The caller's API tokens: list, create (scoped, optionally for one workspace), revoke.

A token can only make tokens with scopes it holds itself, so a narrow token never mints
a wider one.
"""

from __future__ import annotations

from flask import current_app, jsonify, request

from app import accounts, authz
from app.api import bp, schemas
from app.api.auth import current_token, token_required
from app.api.spec import described, request_body
from app.durations import parse_duration
from app.http.errors import ApiError
from app.models import ApiToken, stamp, utcnow
from app.workspaces import service


def token_dict(row: ApiToken) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "scopes": row.scopes.split(),
        "workspace_id": row.workspace_id,
        "status": row.status(),
        "created_at": stamp(row.created_at),
        "expires_at": stamp(row.expires_at),
        "last_used_at": stamp(row.last_used_at),
    }


@bp.get("/users/me/tokens")
@token_required("account", any_workspace=False)
@described(returns=[schemas.Token])
def list_tokens():
    """The caller's API tokens (never their secret)."""
    return jsonify([token_dict(t) for t in accounts.tokens_of(current_token().user)])


@bp.post("/users/me/tokens")
@token_required("account", any_workspace=False)
@described(body=schemas.NewToken, status=201, returns=schemas.NewTokenAnswer)
def create_token():
    """Create a token: scopes (a subset of the caller's), lifetime, workspace.

    The lifetime is within the instance's maximum and the caller's own; a workspace
    limits the token to that one."""
    body = request_body()
    caller, user = current_token(), current_token().user
    try:
        # Without scopes, the new token gets the caller's own: never more.
        scopes = accounts.validate_scopes(body.scopes or sorted(caller.scope_set))
        lifetime = parse_duration(body.lifetime) if body.lifetime else None
    except (accounts.AccountError, ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_token_request", str(exc)) from None
    wider = sorted(set(scopes) - caller.scope_set)
    if wider:
        raise ApiError(
            403, "insufficient_scope", f"this token cannot grant the scope {wider[0]!r} it lacks"
        )
    if caller.expires_at is not None:
        # A token never makes one that outlives it; without a lifetime, they end together.
        remaining = caller.expires_at - utcnow()
        if lifetime is None:
            lifetime = remaining
        elif lifetime > remaining:
            raise ApiError(
                403,
                "token_outlives_caller",
                f"a token cannot make one that outlives it (this one expires at "
                f"{caller.expires_at:%Y-%m-%d %H:%M} UTC)",
            )
    workspace = None
    if body.workspace is not None:
        try:
            workspace = service.get_visible(user, body.workspace, needed=authz.USE)
        except service.WorkspaceError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
    try:
        row, plaintext = accounts.create_token(
            user,
            body.name or "api",
            lifetime,
            scopes=scopes,
            workspace=workspace,
            max_lifetime=current_app.config["BERTH_SETTINGS"].max_token_lifetime,
            source_ip=request.remote_addr,
            not_after=caller.expires_at,
        )
    except accounts.AccountError as exc:
        raise ApiError(422, "invalid_token_request", str(exc)) from None
    return jsonify({**token_dict(row), "token": plaintext}), 201


@bp.delete("/users/me/tokens/<int:token_id>")
@token_required("account", any_workspace=False)
@described(status=204)
def revoke_token(token_id):
    """Revoke one of the caller's tokens."""
    row = ApiToken.get_or_none((ApiToken.id == token_id) & (ApiToken.user == current_token().user))
    if row is None:
        raise ApiError(404, "not_found", f"you have no token {token_id}")
    accounts.revoke_token(row, source_ip=request.remote_addr)
    return "", 204
