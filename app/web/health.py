"""``/healthz``: whether the web app answers and reaches its database (for the
container healthcheck and load balancers; no login, no rate limit)."""

from flask import Blueprint, current_app

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
