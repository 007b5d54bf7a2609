"""SSH keys of the caller, and what a client needs to reach the gateway."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api import bp
from app.api.auth import current_token, token_required
from app.http.errors import ApiError, json_body
from app.ssh import hostkey, keys


def _user():
    return current_token().user


@bp.get("/users/me/keys")
@token_required("account", any_workspace=False)
def list_keys():
    return jsonify([keys.to_dict(k) for k in keys.keys_of(_user())])


@bp.post("/users/me/keys")
@token_required("account", any_workspace=False)
def add_key():
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("public_key"), str):
        raise ApiError(422, "invalid_key", 'send {"public_key": "ssh-ed25519 AAAA…"}')
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise ApiError(422, "invalid_key", "name must be a string")
    try:
        key = keys.add(_user(), body["public_key"], name)
    except keys.SshKeyError as exc:
        raise ApiError(422, "invalid_key", str(exc)) from None
    return jsonify(keys.to_dict(key)), 201


@bp.delete("/users/me/keys/<key_id>")
@token_required("account", any_workspace=False)
def remove_key(key_id):
    try:
        keys.remove(_user(), key_id)
    except keys.SshKeyError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return "", 204


@bp.get("/ssh")
@token_required("workspaces:read")
def gateway_info():
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
