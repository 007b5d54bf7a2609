"""Error pages: every refusal says why, and no traceback ever reaches a person."""

import shutil

import peewee
from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.http.errors import ApiError, api_error, is_api_request

_DEFAULT_REASONS = {
    400: "The request could not be understood.",
    403: "You are not allowed to see this page.",
    404: "There is nothing at this address.",
    405: "This address does not accept that kind of request.",
    429: "Too many requests. Wait a little and try again.",
    500: "Something went wrong on our side. The error was logged.",
}


def _page(status: int, reason: str | None):
    reason = reason or _DEFAULT_REASONS.get(status, "The request failed.")
    return render_template("errors/error.html", status=status, reason=reason), status


def _data_dir_full(app) -> bool:
    """Whether the data dir's filesystem is (all but) full: SQLite then often says only
    "disk I/O error", when its write-ahead log cannot grow."""
    settings = app.config.get("BERTH_SETTINGS")
    if settings is None or not settings.database_url.startswith("sqlite"):
        return False
    try:
        return shutil.disk_usage(settings.data_dir).free < 4 * 1024 * 1024
    except OSError:
        return False


def init_app(app) -> None:
    @app.errorhandler(ApiError)
    def api_refused(error: ApiError):
        return api_error(error.status, error.code, error.message)

    @app.errorhandler(CSRFError)
    def csrf_refused(error):
        reason = (
            "The form was refused because its security token is missing or out of date "
            f"({error.description}). Reload the page and send it again."
        )
        if is_api_request():
            return api_error(400, "csrf_failed", reason)
        return _page(400, reason)

    @app.errorhandler(429)
    def too_many(error):
        reason = error.description or _DEFAULT_REASONS[429]
        if is_api_request():
            return api_error(429, "rate_limited", reason)
        if request.endpoint == "auth.login":
            return render_template(
                "auth/login.html", error=reason, username=request.form.get("username", "")
            ), 429
        return _page(429, reason)

    @app.errorhandler(HTTPException)
    def http_error(error):
        if is_api_request():
            return api_error(error.code, error.name.lower().replace(" ", "_"), error.description)
        described = error.description != type(error).description
        return _page(error.code, error.description if described else None)

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    def database_unavailable(error):
        # The database went away (restarted, unreachable) or its disk is full: the
        # request's transaction did not commit, and the next request connects anew.
        app.logger.warning("database error on %s %s: %s", request.method, request.path, error)
        if "full" in str(error) or _data_dir_full(app):
            status, code = 507, "storage_full"
            reason = (
                "Berth's database has no space left on its filesystem, so nothing was "
                "saved. An admin must free space there."
            )
        else:
            status, code = 503, "database_unavailable"
            reason = (
                "The database does not answer right now (it may be restarting), so nothing "
                "was saved. Try again in a moment."
            )
        if is_api_request():
            return api_error(status, code, reason)
        return _page(status, reason)

    @app.errorhandler(Exception)
    def unexpected(error):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if is_api_request():
            return api_error(500, "internal_error", _DEFAULT_REASONS[500])
        return _page(500, None)

    @app.errorhandler(InternalServerError)
    def internal(error):
        return unexpected(error)
