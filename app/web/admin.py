"""The admin page: people and their accounts."""

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app import accounts
from app.models import ROLES, User

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin_required(view):
    @wraps(view)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user.is_admin:
            abort(403, "This page is for administrators.")
        return view(*args, **kwargs)

    return wrapper


def _user_or_404(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        abort(404, "There is no such user.")
    return user


@bp.route("/")
@admin_required
def index():
    users = User.select().order_by(User.username)
    return render_template("admin/index.html", users=users, roles=ROLES)


@bp.route("/users", methods=["POST"])
@admin_required
def create_user():
    try:
        user = accounts.create_user(
            request.form.get("username", ""),
            request.form.get("password", ""),
            request.form.get("role", "member"),
        )
    except accounts.AccountError as refusal:
        flash(f"User not created: {refusal}.", "error")
    else:
        flash(f"User {user.username} created.", "success")
    return redirect(url_for("admin.index"))


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
@admin_required
def disable_user(user_id):
    return _set_disabled(user_id, True)


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
@admin_required
def enable_user(user_id):
    return _set_disabled(user_id, False)


def _set_disabled(user_id: int, disabled: bool):
    user = _user_or_404(user_id)
    try:
        accounts.set_disabled(user, disabled, acting=current_user.row)
    except accounts.AccountError as refusal:
        flash(str(refusal), "error")
    else:
        flash(f"{user.username} is {'disabled' if disabled else 'enabled again'}.", "success")
    return redirect(url_for("admin.index"))


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@admin_required
def reset_password(user_id):
    user = _user_or_404(user_id)
    try:
        accounts.set_password(user, request.form.get("password", ""))
    except accounts.AccountError as refusal:
        flash(f"Password not changed: {refusal}.", "error")
    else:
        flash(f"The password of {user.username} was reset.", "success")
    return redirect(url_for("admin.index"))
