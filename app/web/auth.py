"""Login and logout."""

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from app import accounts, audit
from app.web.extensions import LoginUser, limiter
from app.web.forms import safe_next

bp = Blueprint("auth", __name__)


def _limit(name: str):
    return lambda: getattr(current_app.config["BERTH_SETTINGS"], name)


def _account_key() -> str:
    return "login-account:" + request.form.get("username", "").strip().lower()


def _failed(response) -> bool:
    # Only failed attempts count towards the limits; a successful login redirects.
    return response.status_code != 302


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    _limit("login_limit_account"),
    key_func=_account_key,
    methods=["POST"],
    deduct_when=_failed,
    error_message="Too many failed login attempts for this account. "
    "Wait a few minutes and try again.",
)
@limiter.limit(
    _limit("login_limit_ip"),
    methods=["POST"],
    deduct_when=_failed,
    error_message="Too many failed login attempts from your address. "
    "Wait a few minutes and try again.",
)
def login():
    next_url = safe_next(request.values.get("next"), url_for("dashboard.index"))
    if current_user.is_authenticated:
        return redirect(next_url)
    if request.method == "GET":
        return render_template("auth/login.html", next=next_url)
    if not current_app.config["BERTH_SETTINGS"].password_login:
        return render_template(
            "auth/login.html",
            error="Password sign-in is turned off here; use single sign-on.",
            next=next_url,
        ), 403
    username = request.form.get("username", "")
    try:
        user = accounts.authenticate(username, request.form.get("password", ""))
    except accounts.AccountError as refusal:
        current_app.logger.info(
            "login refused for %r from %s: %s", username, request.remote_addr, refusal
        )
        audit.record(
            "login",
            actor=username.strip().lower()[:64] or "unknown",
            source_ip=request.remote_addr,
            outcome="failure",
            method="password",
            reason=str(refusal),
        )
        return render_template(
            "auth/login.html", error=str(refusal), username=username, next=next_url
        ), 401
    session.permanent = True
    login_user(LoginUser(user))
    current_app.logger.info("login of %s from %s", user.username, request.remote_addr)
    audit.record("login", actor=user.username, source_ip=request.remote_addr, method="password")
    return redirect(next_url)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        audit.record("logout", actor=current_user.username, source_ip=request.remote_addr)
    logout_user()
    return redirect(url_for("auth.login"))
