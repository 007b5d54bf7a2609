"""People and groups over the API: admins change roles and groups (scope ``admin``)."""

from __future__ import annotations

from flask import jsonify

from app import accounts, groups
from app.api import bp
from app.api.auth import current_token, require_right, token_required
from app.http import auditing
from app.http.errors import ApiError, json_body
from app.models import Group, User, stamp
from app.workspaces import quotas


def _user_dict(user: User) -> dict:
    return {
        "username": user.username,
        "role": user.role,
        "email": user.email,
        "sso": user.sso_subject is not None,
        "groups": [g.name for g in groups.of(user)],
        "disabled": user.is_disabled,
        "created_at": stamp(user.created_at),
        "last_login_at": stamp(user.last_login_at),
    }


def _group_dict(group: Group) -> dict:
    return {
        "name": group.name,
        "description": group.description,
        "members": [u.username for u in groups.members(group)],
    }


def _find_user(username: str) -> User:
    try:
        return accounts.find_user(username)
    except accounts.AccountError as exc:
        raise ApiError(404, "not_found", str(exc)) from None


def _find_group(name: str) -> Group:
    try:
        return groups.find(name)
    except groups.GroupError as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@bp.get("/users")
@token_required("admin", any_workspace=False)
def list_users():
    require_right("workspaces.read_all", "list people")
    return jsonify([_user_dict(u) for u in User.select().order_by(User.username)])


@bp.patch("/users/<name>")
@token_required("admin", any_workspace=False)
def update_user(name):
    """{"role": ...}"""
    require_right("users.manage", "change people")
    user = _find_user(name)
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"role", "email"}:
        raise ApiError(
            422, "invalid_user", 'send {"role": "admin|template-admin|member|auditor", "email": …}'
        )
    if "email" in body:
        try:
            accounts.set_email(user, body["email"])
        except accounts.AccountError as exc:
            raise ApiError(422, "invalid_email", str(exc)) from None
        auditing.record("user.email", f"user:{user.username}", email=user.email)
    if "role" in body:
        before = user.role
        try:
            accounts.set_role(user, body["role"], acting=current_token().user)
        except accounts.AccountError as exc:
            raise ApiError(422, "invalid_role", str(exc)) from None
        auditing.record("user.role", f"user:{user.username}", before=before, after=user.role)
    return jsonify(_user_dict(user))


@bp.get("/groups")
@token_required("workspaces:read", any_workspace=False)
def list_groups():
    return jsonify([_group_dict(g) for g in Group.select().order_by(Group.name)])


@bp.post("/groups")
@token_required("admin", any_workspace=False)
def create_group():
    require_right("users.manage", "create groups")
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise ApiError(422, "invalid_group", 'send {"name": "...", "description": "..."}')
    try:
        group = groups.create(body["name"], str(body.get("description") or ""))
    except groups.GroupError as exc:
        raise ApiError(422, "invalid_group", str(exc)) from None
    auditing.record("group.create", f"group:{group.name}")
    return jsonify(_group_dict(group)), 201


@bp.put("/groups/<name>/members/<user>")
@token_required("admin", any_workspace=False)
def add_group_member(name, user):
    require_right("users.manage", "change groups")
    group, user = _find_group(name), _find_user(user)
    if groups.add_member(group, user):
        auditing.record("group.member.add", f"group:{group.name}", user=user.username)
    return jsonify(_group_dict(group))


@bp.delete("/groups/<name>/members/<user>")
@token_required("admin", any_workspace=False)
def remove_group_member(name, user):
    require_right("users.manage", "change groups")
    group, user = _find_group(name), _find_user(user)
    if not groups.remove_member(group, user):
        raise ApiError(404, "not_found", f"{user.username} is not in {group.name}")
    auditing.record("group.member.remove", f"group:{group.name}", user=user.username)
    return "", 204


def _subject(kind: str, name: str):
    if kind == "users":
        return _find_user(name)
    if kind == "groups":
        return _find_group(name)
    raise ApiError(404, "not_found", f"quotas are per 'users' or 'groups', not {kind!r}")


@bp.get("/quotas/<kind>/<name>")
@token_required("workspaces:read", any_workspace=False)
def get_quota(kind, name):
    """A quota with its current usage: one's own and one's groups', or any for those who
    read everything."""
    subject, caller = _subject(kind, name), current_token().user
    own = subject == caller or (kind == "groups" and subject in groups.of(caller))
    if not own:
        require_right("workspaces.read_all", "read others' quotas")
    return jsonify(quotas.to_dict(subject))


@bp.put("/quotas/<kind>/<name>")
@token_required("admin", any_workspace=False)
def set_quota(kind, name):
    """{"max_workspaces", "max_running", "max_cpu", "max_memory_mb"}: numbers or null."""
    require_right("users.manage", "set quotas")
    subject = _subject(kind, name)
    body = json_body()
    try:
        quotas.set_quota(subject, body)
    except quotas.QuotaError as exc:
        raise ApiError(422, "invalid_quota", str(exc)) from None
    auditing.record("quota.set", f"{kind[:-1]}:{name}", **body)
    return jsonify(quotas.to_dict(subject))
