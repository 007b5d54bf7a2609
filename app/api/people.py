"""People and groups over the API: admins change roles and groups (scope ``admin``)."""

from __future__ import annotations

from flask import jsonify

from app import accounts, groups
from app.api import bp, schemas
from app.api.auth import current_token, require_right, token_required
from app.api.spec import described, request_body
from app.http import auditing
from app.http.errors import ApiError
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
@described(returns=[schemas.Person])
def list_users():
    """Everyone, with role and groups (admins, auditors)."""
    require_right("workspaces.read_all", "list people")
    return jsonify([_user_dict(u) for u in User.select().order_by(User.username)])


@bp.patch("/users/<name>")
@token_required("admin", any_workspace=False)
@described(body=schemas.UserChange, returns=schemas.Person)
def update_user(name):
    """Change a person's role or email (admins)."""
    require_right("users.manage", "change people")
    user = _find_user(name)
    body = request_body().model_dump(exclude_unset=True)
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
@described(returns=[schemas.Group])
def list_groups():
    """Groups and their members."""
    return jsonify([_group_dict(g) for g in Group.select().order_by(Group.name)])


@bp.post("/groups")
@token_required("admin", any_workspace=False)
@described(body=schemas.NewGroup, status=201, returns=schemas.Group)
def create_group():
    """Create a group (admins)."""
    require_right("users.manage", "create groups")
    body = request_body()
    try:
        group = groups.create(body.name, body.description or "")
    except groups.GroupError as exc:
        raise ApiError(422, "invalid_group", str(exc)) from None
    auditing.record("group.create", f"group:{group.name}")
    return jsonify(_group_dict(group)), 201


@bp.put("/groups/<name>/members/<user>")
@token_required("admin", any_workspace=False)
@described(returns=schemas.Group)
def add_group_member(name, user):
    """Add a person to a group (admins)."""
    require_right("users.manage", "change groups")
    group, user = _find_group(name), _find_user(user)
    if groups.add_member(group, user):
        auditing.record("group.member.add", f"group:{group.name}", user=user.username)
    return jsonify(_group_dict(group))


@bp.delete("/groups/<name>/members/<user>")
@token_required("admin", any_workspace=False)
@described(status=204)
def remove_group_member(name, user):
    """Remove a person from a group (admins)."""
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
@described(returns=dict)
def get_quota(kind, name):
    """A quota of a user (kind users) or group (kind groups), with its usage.

    One's own and one's groups', or any for those who read everything."""
    subject, caller = _subject(kind, name), current_token().user
    own = subject == caller or (kind == "groups" and subject in groups.of(caller))
    if not own:
        require_right("workspaces.read_all", "read others' quotas")
    return jsonify(quotas.to_dict(subject))


@bp.put("/quotas/<kind>/<name>")
@token_required("admin", any_workspace=False)
@described(body=schemas.QuotaChange, returns=dict)
def set_quota(kind, name):
    """Set a quota: max_workspaces, max_running, max_cpu, max_memory_mb (admins)."""
    require_right("users.manage", "set quotas")
    subject = _subject(kind, name)
    body = request_body().model_dump(exclude_unset=True)
    try:
        quotas.set_quota(subject, body)
    except quotas.QuotaError as exc:
        raise ApiError(422, "invalid_quota", str(exc)) from None
    auditing.record("quota.set", f"{kind[:-1]}:{name}", **body)
    return jsonify(quotas.to_dict(subject))
