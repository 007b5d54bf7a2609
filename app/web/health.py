"""``/healthz``: whether the web app answers and reaches its database (for the
container healthcheck and load balancers; no login, no rate limit). Also
``/favicon.ico``, which browsers ask for on their own whatever a page links."""

from flask import Blueprint, current_app, send_from_directory

from app.db import database
from app.http.extensions import limiter

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz():
    try:
        database.execute_sql("SELECT 1")
    except Exception as exc:  # any database failure makes the app unhealthy
        # The reason goes to the log, not to whoever asks (this page needs no login).
        current_app.logger.error("health check: the database does not answer: %s", exc)
        return {"status": "unhealthy", "database": "unreachable"}, 503
    return {"status": "ok"}


@bp.get("/favicon.ico")
@limiter.exempt
def favicon():
    return send_from_directory(
        current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400
    )
