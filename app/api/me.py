"""Who the caller is."""

from flask import jsonify

from app import groups
from app.api import bp, schemas
from app.api.auth import current_token, token_required
from app.api.spec import described
from app.models import stamp


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
