"""The caller's git credentials: tokens per host and the SSH key pair Berth keeps for
them, used to clone their private repositories and inside their own workspaces."""

from __future__ import annotations

from flask import jsonify, request

from app.api import bp, schemas
from app.api.auth import current_token, token_required
from app.api.spec import described, request_body
from app.credentials import store
from app.http.errors import ApiError
from app.models import row_id


@bp.get("/users/me/git-credentials")
@token_required("account", any_workspace=False)
@described(returns=[schemas.GitCredential])
def list_git_credentials():
    """The caller's git credentials, without their secrets."""
    return jsonify(store.listing(current_token().user))


@bp.post("/users/me/git-credentials")
@token_required("account", any_workspace=False)
@described(body=schemas.NewGitCredential, status=201, returns=schemas.GitCredential)
def add_git_credential():
    """Keep a token for a git host (replacing the one kept for it), or make a new SSH key
    pair (its public half is in the answer: add it to your account on the git host)."""
    body = request_body()
    user = current_token().user
    try:
        if body.kind == "ssh":
            if body.host or body.token or body.username:
                raise store.CredentialError(
                    422, "invalid_credential", "an ssh key pair takes no host, token or username"
                )
            row = store.make_key(user, source_ip=request.remote_addr)
        else:
            row = store.add_token(
                user, body.host, body.token, body.username, source_ip=request.remote_addr
            )
    except store.CredentialError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return jsonify(store.describe(row)), 201


@bp.delete("/users/me/git-credentials/<credential_id>")
@token_required("account", any_workspace=False)
@described(status=204)
def remove_git_credential(credential_id):
    """Remove one of the caller's git credentials: from now on it is used nowhere."""
    try:
        store.remove(current_token().user, row_id(credential_id), source_ip=request.remote_addr)
    except store.CredentialError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return "", 204
