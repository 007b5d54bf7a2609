"""``/metrics`` for Prometheus: the database's figures (app.metrics) and this process's
API requests by status and latency. Bearer-protected: the instance's metrics token, or
an API token with the ``admin`` scope of someone whose role may read metrics."""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from app import accounts, authz
from app.metrics import DatabaseCollector

bp = Blueprint("metrics", __name__)


class ApiMetrics:
    """Counters of one web process, kept in the app (one registry per app)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.registry.register(DatabaseCollector())
        self.requests = Counter(
            "berth_api_requests",
            "API requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "berth_api_request_duration_seconds",
            "API request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )


def init_app(app) -> None:
    metrics = app.extensions["berth_metrics"] = ApiMetrics()

    @app.before_request
    def _start_clock():
        g.request_started = time.perf_counter()

    @app.after_request
    def _count(response):
        if request.blueprint == "api" and "request_started" in g:
            # The route's rule, not the path, so ids do not explode the label set.
            route = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.requests.labels(request.method, route, str(response.status_code)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - g.request_started)
        return response


def _allowed() -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return False
    configured = current_app.config["BERTH_SETTINGS"].metrics_token
    if configured and hmac.compare_digest(value.encode(), configured.encode()):
        return True
    try:
        token = accounts.verify_token(value, source_ip=request.remote_addr)
    except accounts.TokenRefused:
        return False
    return "admin" in token.scope_set and authz.can(token.user, "metrics.read")


@bp.get("/metrics")
def metrics():
    if not _allowed():
        return Response(
            "metrics need 'Authorization: Bearer <metrics token or an admin API token>'\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="berth-metrics"'},
            mimetype="text/plain",
        )
    registry = current_app.extensions["berth_metrics"].registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
