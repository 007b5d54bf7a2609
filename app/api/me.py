"""Who the caller is."""

from flask import jsonify

from app.api import bp
from app.api.auth import current_token, token_required


@bp.get("/me")
@token_required
def me():
    user = current_token().user
    return jsonify(
        {
            "id": user.id,
            "username": user.username,
            "role": user.role,
            "created_at": user.created_at.isoformat() + "Z",
            "last_login_at": user.last_login_at.isoformat() + "Z" if user.last_login_at else None,
        }
    )
