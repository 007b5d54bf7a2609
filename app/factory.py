"""The Flask application factory: settings in, a configured app with its blueprints out."""

from __future__ import annotations

import json
import logging
import math
from datetime import timedelta

from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from app import __version__, authz, platform, slots
from app.config import Settings
from app.db import open_database
from app.http import extensions
from app.models import MAX_ROW_ID


def _not_a_number(text: str):
    raise ValueError(f"{text} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number")
    return value


class _StrictJSON(DefaultJSONProvider):
    """JSON as the standard has it, both ways: NaN, Infinity and numbers too large for a
    float are refused in requests (Python's json takes them), never written in answers."""

    def loads(self, s, **kwargs):
        kwargs.setdefault("parse_constant", _not_a_number)
        kwargs.setdefault("parse_float", _finite)
        return super().loads(s, **kwargs)

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


class _RowIdConverter(IntegerConverter):
    """``<int:...>`` in every route: a number too large for a database id is no match
    (a 404), not an overflow deep in the database driver."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ROW_ID)
        super().__init__(url_map, *args, **kwargs)


class _TlsAwareSessions(SecureCookieSessionInterface):
    """Marks the session cookie Secure whenever the request arrived over TLS."""

    def get_cookie_secure(self, app):
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def _can(right: str) -> bool:
    """For templates: whether the signed-in person's role grants ``right``."""
    return current_user.is_authenticated and authz.can(current_user.row, right)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.load()
    settings.ensure_data_dir()
    db = open_database(settings)

    # Rooted at app/web so templates/ and static/ sit beside the views that use them.
    app = Flask("app.web")
    app.json = _StrictJSON(app)
    app.url_map.converters["int"] = _RowIdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="berth_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.uses_tls,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session that holds it
        # No request body is read past this (a file upload's limit, 256 MB, and a little):
        # larger ones are refused before any of it is held in memory.
        MAX_CONTENT_LENGTH=257 * 1024 * 1024,
        BERTH_SETTINGS=settings,
    )
    app.session_interface = _TlsAwareSessions()
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(
            app.wsgi_app,
            x_for=settings.proxy_hops,
            x_proto=settings.proxy_hops,
            x_host=settings.proxy_hops,
        )
    app.logger.setLevel(getattr(logging, settings.log_level.upper()))
    app.jinja_env.globals["berth_version"] = __version__
    app.jinja_env.globals["can"] = _can
    # Templates, limits and prices are JSON text in their rows.
    app.jinja_env.filters["fromjson"] = lambda text: json.loads(text or "{}")
    # JSON to read on a page (escaped by the template like any text, not for a script).
    app.jinja_env.filters["json_text"] = lambda value: json.dumps(value, ensure_ascii=False)

    # No connect before each request: peewee connects on a request's first query, so
    # requests that need no database (the IDE's cached authorizations) open none.
    @app.teardown_request
    def _close(_exc):
        if not db.is_closed():
            db.close()
        for client in g.pop("engine_clients", []):
            client.close()

    extensions.init_app(app, settings)
    slots.init_app(app, settings)

    @app.after_request
    def _headers(response):
        # Berth's pages are never framed (clickjacking), never sniffed into another type,
        # and never tell another site which page linked to it.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    from app.api import bp as api_bp
    from app.web import (
        account,
        admin,
        apps,
        auth,
        dashboard,
        error_pages,
        health,
        metrics,
        sso,
    )

    app.register_blueprint(auth.bp)
    app.register_blueprint(sso.bp)
    sso.init_app(app, settings)

    @app.context_processor
    def _platform_health():
        if not (current_user.is_authenticated and authz.can(current_user.row, "settings.manage")):
            return {}
        return {"platform_problems": platform.problems(settings)}

    @app.context_processor
    def _sign_in_options():
        return {
            "sso_providers": sso.providers(settings),
            "password_login": settings.password_login,
        }

    app.register_blueprint(dashboard.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(apps.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    metrics.init_app(app)
    app.register_blueprint(api_bp)
    error_pages.init_app(app)
    return app
