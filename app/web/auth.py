"""Login and logout."""

import secrets

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app import accounts, audit
from app.http.extensions import LoginUser, limiter
from app.web.forms import safe_next

bp = Blueprint("auth", __name__)


def _limit(name: str):
    return lambda: getattr(current_app.config["BERTH_SETTINGS"], name)


DEVICE_COOKIE = "berth_device"
DEVICE_DAYS = 90


def _device_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="berth-login-device")


def _known_device(username: str) -> str | None:
    """The id of this browser if it signed in as ``username`` before (a signed cookie)."""
    try:
        data = _device_signer().loads(
            request.cookies.get(DEVICE_COOKIE, ""), max_age=DEVICE_DAYS * 86400
        )
    except BadSignature:
        return None
    return data.get("d") if isinstance(data, dict) and data.get("u") == username else None


def _account_key() -> str:
    """Failed logins of an account count together, except from a browser that signed in
    to it before: that one has a count of its own, so a stranger guessing an account's
    password cannot lock its owner out (OWASP's device cookies)."""
    username = request.form.get("username", "").strip().lower()
    device = _known_device(username)
    return f"login-device:{username}:{device}" if device else f"login-account:{username}"


def _address_key() -> str:
    """Failed logins from one address count together (a guesser there is slowed down for
    every account), but a browser that signed in to the account before counts apart: a
    guesser behind the same address does not lock its owner out."""
    username = request.form.get("username", "").strip().lower()
    device = _known_device(username)
    return f"login-device:{username}:{device}" if device else f"login-ip:{request.remote_addr}"


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
    key_func=_address_key,
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
    response = redirect(next_url)
    device = _known_device(user.username) or secrets.token_urlsafe(12)
    response.set_cookie(
        DEVICE_COOKIE,
        _device_signer().dumps({"u": user.username, "d": device}),
        max_age=DEVICE_DAYS * 86400,
        path=url_for("auth.login"),
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",
    )
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        audit.record("logout", actor=current_user.username, source_ip=request.remote_addr)
        # The cookie is signed, not stored: a copy of it would still work without this.
        accounts.end_sessions(current_user.row)
    logout_user()
    return redirect(url_for("auth.login"))
