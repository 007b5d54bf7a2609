"""Workspaces in the browser: the hand-over from the dashboard to the apps origin, and
the forward_auth endpoint Caddy asks before every request there.

The control-plane session never reaches the apps origin. Opening a workspace goes
through ``/apps/open`` on the main origin (signed in, authorized), which sends the
browser on with a one-minute ticket; the apps origin trades it for its own cookie,
scoped to that one workspace (or port) and signed for it, and Caddy asks
``/_berth/authorize`` about every request, WebSocket upgrades included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app import authz
from app.http import auditing
from app.http.extensions import limiter
from app.models import User
from app.runtime.layout import CODE_SERVER_PORT
from app.states import Status as S
from app.workspaces import activity, apps, ide, ide_sessions, lifecycle, service, strangers

bp = Blueprint("apps", __name__)
COOKIE = "berth_app"
TICKET = "berth_ticket"
TICKET_SECONDS = 60
COOKIE_SECONDS = 8 * 3600
# Berth's own cookies stay out of workspaces; the IDE's session cookie is Berth's to set.
NOT_FORWARDED = {"berth_session", COOKIE, ide.SESSION_COOKIE}
GRANT_SECONDS = 2.0
IDE_PROBE_SECONDS = 0.5  # a container that is up refuses at once when nothing listens
MAX_CACHED = 4096  # grants cached below (one per cookie)

_grants: dict[tuple[str, str], Grant] = {}


def _settings():
    return current_app.config["BERTH_SETTINGS"]


def _signer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=f"berth-apps-{purpose}")


# --- the main origin -----------------------------------------------------------------


@bp.get("/apps/open")
@login_required
def open_app():
    """Check the signed-in person may open ``to`` and send them there with a ticket."""
    settings = _settings()
    to = request.args.get("to", "")
    found = apps.target_of_url(settings, to)
    if found is None:
        abort(400, "That is not the address of a workspace on this Berth.")
    target, _ = found
    ws = apps.find(target)
    missing = f"There is no workspace {target.workspace} of {target.owner}."
    if ws is None:
        abort(404, missing)
    action = "app.open.port" if target.port else "app.open.ide"
    where = f"workspace:{ws.owner.username}.{ws.name}"
    if not apps.may_open(current_user.row, ws, target.port):
        auditing.record(action, where, "denied", port=target.port)
        if authz.level(current_user.row, ws) is None:
            abort(404, missing)  # as its page answers: nothing said about its existence
        abort(403, f"You may not open {target.workspace} of {target.owner}.")
    auditing.record(action, where, port=target.port, shared=ws.owner_id != current_user.row.id)
    if target.port and apps.port_row(ws, target.port) is None:
        abort(404, f"Port {target.port} is not open in {ws.name}; open it on its page first.")
    row = current_user.row
    ticket = _signer("ticket").dumps({"u": row.id, "v": row.session_version, "t": target.label})
    return redirect(to + ("&" if "?" in to else "?") + urlencode({TICKET: ticket}))


# --- the apps origin (through Caddy's forward_auth) ----------------------------------


def _message(status: int, title: str, text: str, refresh: int | None = None):
    page = render_template(
        "apps/message.html",
        title=title,
        text=text,
        refresh=refresh,
        main_url=_settings().public_url,
    )
    return page, status, {"Cache-Control": "no-store"}


def _original_url(host: str, uri: str, proto: str) -> str:
    return f"{proto}://{host}{uri}"


def _without_ticket(uri: str) -> str:
    path, _, query = uri.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != TICKET]
    return path + (f"?{urlencode(kept)}" if kept else "")


def _navigation() -> bool:
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode:
        return mode == "navigate"
    return request.headers.get("X-Forwarded-Method", "GET") == "GET" and "text/html" in (
        request.headers.get("Accept", "")
    )


def _cookie_user(target: apps.Target) -> User | None:
    try:
        data = _signer("cookie").loads(request.cookies.get(COOKIE, ""), max_age=COOKIE_SECONDS)
    except BadSignature:
        return None
    if data.get("t") != target.label:
        return None
    user = User.get_or_none(User.id == data.get("u"))
    # Signed out (or a new password) on the main origin: the IDE's cookie ends with it.
    if user is None or user.session_version != data.get("v"):
        return None
    return user


def _forwarded_cookies() -> str:
    jar = SimpleCookie()
    try:
        jar.load(request.headers.get("Cookie", ""))
    except Exception:  # a malformed header from the client: forward nothing
        return ""
    return "; ".join(f"{k}={m.coded_value}" for k, m in jar.items() if k not in NOT_FORWARDED)


@dataclass(frozen=True)
class Grant:
    """A recent yes: who, which workspace, where it runs. Reused for GRANT_SECONDS so the
    dozens of requests of one page load cost no database work (a revoked right or a
    stopped workspace takes effect that much later)."""

    ws_id: int
    username: str
    address: str
    ide_secret: str
    expires: float


@bp.get("/_berth/authorize")
@limiter.exempt
def authorize():
    settings = _settings()
    host = request.headers.get("X-Forwarded-Host", request.host)
    uri = request.headers.get("X-Forwarded-Uri", "/")
    proto = request.headers.get("X-Forwarded-Proto", "http")
    found = apps.parse(settings, host, uri)
    if found is None:
        return _message(404, "Not found", "This address names no workspace.")
    target, rest = found
    if settings.apps_domain == "none" and uri.partition("?")[0] == target.prefix:
        return redirect(target.prefix + "/" + uri[len(target.prefix) :], 308)
    ticket = dict(parse_qsl(uri.partition("?")[2])).get(TICKET)
    if ticket:
        return _trade_ticket(ticket, target, uri, proto == "https")
    safe = apps.safe_path(rest)
    if safe is None:
        return _message(400, "Bad path", "The path climbs out of the workspace.")
    key = (request.cookies.get(COOKIE, ""), target.label)
    grant = _grants.get(key)
    if grant is None or grant.expires < time.monotonic():
        grant = _decide(target, host, uri, proto)
        if not isinstance(grant, Grant):
            return grant  # a refusal, a redirect or the starting page
        if len(_grants) >= MAX_CACHED:
            _grants.clear()
        _grants[key] = grant
    activity.record(
        grant.ws_id,
        "http" if target.port else "ide",
        f"port {target.port} ({grant.username})" if target.port else f"browser ({grant.username})",
        every=settings.activity_interval,
    )
    return (
        "",
        200,
        {
            "X-Berth-Upstream": f"{grant.address}:{CODE_SERVER_PORT}",
            "X-Berth-Uri": apps.upstream_path(target, safe),
            "X-Berth-Cookie": "; ".join(
                c for c in (_forwarded_cookies(), f"{ide.SESSION_COOKIE}={grant.ide_secret}") if c
            ),
        },
    )


@bp.get("/_berth/tls-ask")
@limiter.exempt
def tls_ask():
    """Caddy's on-demand TLS check: a certificate is only worth getting for the host of
    a workspace or port that exists (so nobody can make Caddy ask the CA for any name)."""
    found = apps.parse(_settings(), request.args.get("domain", ""), "/")
    ws = apps.find(found[0]) if found is not None else None
    if ws is None:
        return "", 404
    # A port's host only while that port is open: names for every port number would each
    # cost a certificate order (and, with ACME, a line in the public CT logs).
    if found[0].port and apps.port_row(ws, found[0].port) is None:
        return "", 404
    return "", 200


def _decide(target: apps.Target, host: str, uri: str, proto: str):
    """The full check: a Grant, or the response that refuses (or redirects, or waits)."""
    user = _cookie_user(target)
    if user is None:
        if _navigation():
            back = _original_url(host, uri, proto)
            return redirect(_settings().public_url + url_for("apps.open_app", to=back))
        return _message(401, "Sign in", "Open this workspace from the Berth dashboard.")
    ws = apps.find(target)
    if ws is None or not apps.may_open(user, ws, target.port):
        if ws is None or authz.level(user, ws) is None:
            # As its page answers: nothing said about a workspace one cannot see.
            return _message(404, "Not found", f"There is no workspace {target.workspace}.")
        return _message(403, "Forbidden", f"You may not open {target.workspace}.")
    if target.port and apps.port_row(ws, target.port) is None:
        return _message(404, "Port not open", f"Port {target.port} is not open in {ws.name}.")
    # Recorded by the worker at each start (app.runtime.Placement): no engine lookup.
    address = ws.address if ws.status == S.RUNNING else None
    if address is None:
        return _starting(ws, user)
    if target.port is None:
        # Someone else in the IDE: the workspace is no longer the owner's alone.
        strangers.used_by(ws, user, "opened the IDE")
    elif not apps.port_row(ws, target.port).shared:
        # A port reaches what the owner runs (a notebook that runs code, say); only one
        # she shared with everyone is hers to have opened to others.
        strangers.used_by(ws, user, f"opened port {target.port}")
    # Ports are served through code-server's proxy as well: either needs it running.
    waiting = _ide_waiting(ws, address, target)
    if waiting is not None:
        return waiting
    secret = ide.secret(_settings().secret_key, ws.id, ws.container_id or "")
    return Grant(ws.id, user.username, address, secret, time.monotonic() + GRANT_SECONDS)


def _trade_ticket(ticket: str, target: apps.Target, uri: str, secure: bool):
    try:
        data = _signer("ticket").loads(ticket, max_age=TICKET_SECONDS)
    except BadSignature:
        return _message(
            403, "Link expired", "This link has expired; open the workspace from the dashboard."
        )
    if data.get("t") != target.label:
        return _message(403, "Forbidden", "This link is for another workspace.")
    response = redirect(_without_ticket(uri), 302)
    response.set_cookie(
        COOKIE,
        _signer("cookie").dumps({"u": data["u"], "v": data.get("v"), "t": target.label}),
        max_age=COOKIE_SECONDS,
        path=target.prefix + "/" if _settings().apps_domain == "none" else "/",
        secure=secure,
        httponly=True,
        samesite="Lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _ide_waiting(ws, address: str, target: apps.Target):
    """None when code-server answers; else it is started (once, however many ask) and
    the page that waits for it, or says why it cannot be had. Requests other than a
    page's own wait in Caddy for it instead (caddy/routes.caddy): a tab's reconnect."""
    if lifecycle.is_agent(ws):
        return _message(
            404,
            "Not in the browser",
            f"{ws.name} is an agent sandbox: it has no browser IDE or ports; use SSH.",
        )
    if ide.healthz(address, timeout=IDE_PROBE_SECONDS) is not None:
        ide_sessions.answered(ws)
        return None
    what = f"Port {target.port} of {ws.name}" if target.port else f"The IDE of {ws.name}"
    # A new container's environment is probed before code-server starts with it: the
    # page below asks again in a second, and nothing is launched (or waits) meanwhile.
    state = None if service.setting_up(ws) else ide_sessions.opened(_settings(), ws)
    if state is not None and state.state == ide_sessions.UNAVAILABLE:
        # Ports go through the IDE's proxy, so they wait for it too.
        return _message(503, "Not available yet", f"{what}: {state.note}.", refresh=15)
    if not _navigation():
        return None
    return _message(
        503,
        f"Opening port {target.port} of {ws.name}"
        if target.port
        else f"Starting the IDE of {ws.name}",
        f"{what} is being started. This page opens it by itself when it is ready.",
        refresh=1,
    )


def _starting(ws, user: User):
    """A workspace that is not running: start it if it is stopped, and say so."""
    if ws.status in (S.STOPPED, S.FAILED) and service.active_job(ws) is None:
        # If someone else asked first, the page below is right all the same.
        try:
            service.request(
                ws, "start", cause="ide", actor=user.username, data_dir=_settings().data_dir
            )
        except service.WorkspaceError as exc:
            if exc.code == "quota_exceeded":
                return _message(403, "Quota exceeded", exc.message)
    if ws.status in (S.DELETING, S.STOPPING):
        text = f"{ws.name} is {ws.status}. This page tries again by itself."
    else:
        text = f"{ws.name} is starting. This page opens the IDE by itself when it is ready."
    return _message(503, f"Starting {ws.name}", text, refresh=3)
