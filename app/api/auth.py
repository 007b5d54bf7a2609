"""Bearer-token authentication for the API."""

from functools import wraps

from flask import g, request

from app import accounts
from app.api.errors import ApiError
from app.models import ApiToken


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


def token_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        try:
            g.api_token = accounts.verify_token(_bearer())
        except accounts.TokenRefused as refusal:
            raise ApiError(401, refusal.reason, str(refusal)) from None
        return view(*args, **kwargs)

    return wrapper


def current_token() -> ApiToken:
    return g.api_token
