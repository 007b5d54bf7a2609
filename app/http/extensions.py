"""Flask extensions, created once here and bound to an app by ``init_app``."""

from flask import flash, redirect, request, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from app.models import User

csrf = CSRFProtect()
login_manager = LoginManager()
# One gunicorn process with threads serves the web app, so in-memory counters are shared
# by every request; a restart forgets them, which only shortens a lockout.
limiter = Limiter(key_func=get_remote_address, storage_uri="memory://", default_limits=[])


class LoginUser:
    """Adapts a User row to flask-login; a disabled account is never a logged-in one."""

    def __init__(self, user: User):
        self.row = user

    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return not self.row.is_disabled

    def get_id(self) -> str:
        # The session version goes into the signed cookie: raised at logout and password
        # change, it ends every session signed before (app.accounts.end_sessions).
        return f"{self.row.id}.{self.row.session_version}"

    def __getattr__(self, name):
        return getattr(self.row, name)


@login_manager.user_loader
def _load_user(session_id: str):
    user_id, _, version = session_id.partition(".")
    if not user_id.isdigit() or not version.isdigit():
        return None  # a cookie from before session versions: sign in again
    user = User.get_or_none(User.id == int(user_id))
    if user is None or user.is_disabled or user.session_version != int(version):
        return None
    return LoginUser(user)


@login_manager.unauthorized_handler
def _unauthorized():
    flash("Please log in to continue.", "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def init_app(app, settings) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    app.config["RATELIMIT_HEADERS_ENABLED"] = True
    limiter.init_app(app)
