"""Who the caller is, and what they keep in Berth for all their workspaces."""

from flask import current_app, jsonify, request

from app import groups
from app.api import bp, schemas
from app.api.auth import current_token, token_required
from app.api.spec import described, request_body
from app.http.errors import ApiError
from app.models import stamp
from app.workspaces import dotfiles, service


@bp.get("/me")
@token_required()
@described(returns=schemas.Me)
def me():
    """The caller's account, and the token's scopes."""
    user = current_token().user
    return jsonify(
        {
            "id": user.id,
            "username": user.username,
            "role": user.role,
            "groups": [g.name for g in groups.of(user)],
            "token": {
                "id": current_token().id,
                "scopes": current_token().scopes.split(),
                "workspace_id": current_token().workspace_id,
            },
            "created_at": stamp(user.created_at),
            "last_login_at": stamp(user.last_login_at),
        }
    )


@bp.get("/users/me/dotfiles")
@token_required("account", any_workspace=False)
@described(returns=schemas.Dotfiles)
def get_dotfiles():
    """The caller's dotfiles repository."""
    return jsonify({"url": current_token().user.dotfiles_url})


@bp.put("/users/me/dotfiles")
@token_required("account", any_workspace=False)
@described(body=schemas.Dotfiles, returns=schemas.Dotfiles)
def set_dotfiles():
    """Set the dotfiles repository installed into each new workspace of the caller (its
    install script, or its dotfiles linked into $HOME); null removes it."""
    settings = current_app.config["BERTH_SETTINGS"]
    try:
        user = dotfiles.choose(
            current_token().user, request_body().url, settings, source_ip=request.remote_addr
        )
    except service.WorkspaceError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return jsonify({"url": user.dotfiles_url})
