"""SSH keys of the caller, and what a client needs to reach the gateway."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api import bp, schemas
from app.api.auth import current_token, token_required
from app.api.spec import described, request_body
from app.http.errors import ApiError
from app.ssh import hostkey, keys


def _user():
    return current_token().user


@bp.get("/users/me/keys")
@token_required("account", any_workspace=False)
@described(returns=[schemas.SshKey])
def list_keys():
    """The caller's SSH public keys."""
    return jsonify([keys.to_dict(k) for k in keys.keys_of(_user())])


@bp.post("/users/me/keys")
@token_required("account", any_workspace=False)
@described(body=schemas.NewKey, status=201, returns=schemas.SshKey)
def add_key():
    """Add an SSH public key (OpenSSH one-line format)."""
    body = request_body()
    try:
        key = keys.add(_user(), body.public_key, body.name)
    except keys.SshKeyError as exc:
        raise ApiError(422, "invalid_key", str(exc)) from None
    return jsonify(keys.to_dict(key)), 201


@bp.delete("/users/me/keys/<key_id>")
@token_required("account", any_workspace=False)
@described(status=204)
def remove_key(key_id):
    """Remove one of the caller's SSH keys."""
    try:
        keys.remove(_user(), key_id)
    except keys.SshKeyError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return "", 204


@bp.get("/ssh")
@token_required("workspaces:read")
@described(returns=schemas.Gateway)
def gateway_info():
    """How to reach the SSH gateway: host, port and host key."""
    settings = current_app.config["BERTH_SETTINGS"]
    key = hostkey.load_or_create(settings.data_dir)
    return jsonify(
        {
            "host": settings.ssh_host,
            "port": settings.ssh_port,
            "host_key": hostkey.public_line(key),
            "host_key_fingerprint": keys.fingerprint(key.asbytes()),
        }
    )
