"""Bearer-token authentication and authorization for the API.

A request is allowed when the token carries the route's scope, the token's user has the
right (role, or their rights on the workspace: app.authz), and, for a token limited to
one workspace, the request concerns that workspace.
"""

from functools import wraps

from flask import g, request

from app import accounts, authz
from app.http.errors import ApiError
from app.models import TOKEN_SCOPES, ApiToken


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiError(
            401, "missing_token", "Send an API token as 'Authorization: Bearer <token>'."
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "malformed_token", "The Authorization header must be 'Bearer <token>'.")
    return value.strip()


def token_required(scope: str | None = None, *, any_workspace: bool = True):
    """Authenticate the bearer token and require ``scope`` (None: any valid token).
    ``any_workspace=False`` refuses tokens limited to one workspace (account routes,
    creating workspaces)."""
    assert scope is None or scope in TOKEN_SCOPES, scope

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            try:
                token = accounts.verify_token(_bearer(), source_ip=request.remote_addr)
            except accounts.TokenRefused as refusal:
                raise ApiError(401, refusal.reason, str(refusal)) from None
            g.api_token = token
            if scope is not None and scope not in token.scope_set:
                raise ApiError(
                    403,
                    "insufficient_scope",
                    f"this token lacks the scope {scope!r} (it has: {token.scopes})",
                )
            if not any_workspace and token.workspace_id is not None:
                raise ApiError(
                    403,
                    "token_limited",
                    f"this token is limited to workspace {token.workspace_id}",
                )
            return view(*args, **kwargs)

        # What the route needs, read by the test that checks docs/security.md's table.
        wrapper.berth_scope = scope
        wrapper.berth_any_workspace = any_workspace
        return wrapper

    return decorate


def current_token() -> ApiToken:
    return g.api_token


def require_right(right: str, what: str) -> None:
    """Refuse (403) unless the caller's role grants ``right``; ``what`` names the action."""
    user = current_token().user
    if not authz.can(user, right):
        raise ApiError(403, "forbidden", f"your role ({user.role}) may not {what}")
