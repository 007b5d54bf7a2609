"""Audit records for what a web or API request did: the actor and address come from the
request (the signed-in person, or the API token's owner)."""

from flask import g, request
from flask_login import current_user

from app import audit


def actor() -> str:
    token = g.get("api_token")
    if token is not None:
        return token.user.username
    return current_user.username if current_user.is_authenticated else "anonymous"


def record(action: str, target: str | None = None, outcome: str = "success", **detail):
    token = g.get("api_token")
    if token is not None:
        detail.setdefault("token", token.id)
    return audit.record(
        action,
        actor=actor(),
        source_ip=request.remote_addr,
        target=target,
        outcome=outcome,
        **detail,
    )
