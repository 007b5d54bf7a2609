"""Workspaces and templates over the API."""

from __future__ import annotations

import contextlib
import json

from flask import Response, current_app, jsonify, request, stream_with_context

from app import authz
from app.api import bp, schemas
from app.api.auth import current_token, require_right, token_required
from app.api.spec import described, request_body, request_query
from app.backups import database as db_backups
from app.backups import workspaces as volume_backups
from app.http import auditing
from app.http.errors import ApiError
from app.models import StateChange, Template, Transition, Workspace, stamp
from app.slots import held, long_lived
from app.states import Status
from app.workspaces import activity, apps, listening, logs, service, sharing, templates


def _settings():
    return current_app.config["BERTH_SETTINGS"]


def _user():
    return current_token().user


def _dict(ws) -> dict:
    return service.to_dict(ws, _user(), _settings())


def _workspace(workspace_id, needed: str = authz.READ, include_deleted: bool = False):
    """The workspace the caller names, if their token and rights reach it."""
    limited_to = current_token().workspace_id
    if limited_to is not None and str(workspace_id) != str(limited_to):
        raise ApiError(403, "token_limited", f"this token is limited to workspace {limited_to}")
    try:
        return service.get_visible(_user(), workspace_id, include_deleted, needed)
    except service.WorkspaceError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


@bp.app_errorhandler(service.WorkspaceError)
def _workspace_error(exc: service.WorkspaceError):
    from app.http.errors import api_error

    return api_error(exc.status, exc.code, exc.message)


def template_dict(template: Template) -> dict:
    return {
        "name": template.name,
        "description": template.description,
        "profile": template.profile,
        "source": template.source_kind,
        "parameters": json.loads(template.parameters),
        "limits": json.loads(template.limits),
        "pricing": json.loads(template.pricing),
    }


@bp.get("/templates")
@token_required("workspaces:read")
@described(returns=[schemas.Template])
def list_templates():
    """Templates to create workspaces from."""
    rows = Template.select().where(Template.enabled).order_by(Template.name)
    return jsonify([template_dict(t) for t in rows])


@bp.patch("/templates/<name>")
@token_required("admin", any_workspace=False)
@described(body=schemas.TemplateChange, returns=schemas.Template)
def update_template(name):
    """Change a template's parameters, limits (lifecycle too), approvals, enabled or
    pricing (admins and template admins)."""
    require_right("templates.manage", "change templates")
    template = Template.get_or_none(Template.name == name)
    if template is None:
        raise ApiError(404, "not_found", f"there is no template {name!r}")
    body = request_body().model_dump(exclude_unset=True)
    may_grant_host = authz.can(_user(), "templates.approve_host")
    try:
        templates.update(template, **body, may_grant_host=may_grant_host)
    except templates.GrantRefused as exc:
        auditing.record("template.update", f"template:{template.name}", "denied", error=str(exc))
        raise ApiError(403, "approval_needs_admin", str(exc)) from None
    except templates.TemplateError as exc:
        raise ApiError(422, "invalid_template", str(exc)) from None
    auditing.record("template.update", f"template:{template.name}", **body)
    return jsonify(template_dict(template))


@bp.post("/workspaces")
@token_required("workspaces:write", any_workspace=False)
@described(body=schemas.NewWorkspace, status=201, returns=schemas.Workspace, errors=(409,))
def create_workspace():
    """Create a workspace (built and started by the worker).

    From a template or a repository; with ``wait``, the answer comes when it is running
    or failed."""
    require_right("workspaces.create", "create workspaces")
    body = request_body()
    wait = 600 if body.wait is True else body.wait
    restore = body.restore
    # The slot is taken first: when none is free, nothing is created (a 503 after the
    # create would leave a workspace its client does not know of).
    with _slot_for(wait):
        ws = _create(body, restore)
        if ws.status == Status.RUNNING:  # from the warm pool: ready, but without its token
            _hand_pool_token(ws)
        if wait:
            ws = service.wait_until_settled(ws, float(wait), _settings().data_dir)
    return jsonify(_dict(ws)), 201


def _slot_for(wait):
    """A long-request slot when the request will wait (never in a page's thread)."""
    return held() if wait else contextlib.nullcontext()


def _create(body, restore):
    return service.create(
        _user(),
        body.name,
        template_name=body.template,
        repo=body.repo.model_dump() if body.repo else None,
        parameters=body.parameters,
        ttl=body.ttl,
        cause="api",
        actor=_user().username,
        data_dir=_settings().data_dir,
        local_roots=_settings().repo_roots,
        private_networks=_settings().private_networks,
        restore=service.backup_for(_user(), restore, _settings()) if restore else None,
        source_ip=request.remote_addr,
        egress_allow=body.egress,
        allow_pool=True,
    )


def _hand_pool_token(ws) -> None:
    from app.api.sandbox import running_container
    from app.runtime import ProvisionError
    from app.workspaces.lifecycle import hand_token

    runtime, ws = running_container(ws, 30)
    try:
        hand_token(runtime, ws, ws.container_id, ws.remote_user or "root", _settings().secret_key)
    except ProvisionError as exc:
        # The sandbox is its owner's now; its commands get BERTH_TOKEN all the same.
        current_app.logger.warning("sandbox %s: token file not written: %s", ws.id, exc)


@bp.get("/workspaces")
@token_required("workspaces:read")
@described(returns=[schemas.Workspace])
def list_workspaces():
    """Workspaces the caller may see."""
    rows = service.visible_to(_user()).order_by(service.Workspace.id)
    if current_token().workspace_id is not None:
        rows = rows.where(service.Workspace.id == current_token().workspace_id)
    return jsonify(service.to_dicts(rows, _user(), _settings()))


@bp.get("/workspaces/<workspace_id>")
@token_required("workspaces:read")
@described(returns=schemas.Workspace)
def get_workspace(workspace_id):
    """One workspace."""
    return jsonify(_dict(_workspace(workspace_id)))


@bp.get("/workspaces/<workspace_id>/history")
@token_required("workspaces:read")
@described(returns=schemas.History)
def workspace_history(workspace_id):
    """Every status change, newest first, with its cause, actor and note (the reason of
    an automatic action), and the jobs with their reasons."""
    ws = _workspace(workspace_id, include_deleted=True)
    changes = ws.state_changes.order_by(StateChange.id.desc()).limit(200)
    jobs = ws.transitions.order_by(Transition.id.desc()).limit(100)
    return jsonify(
        {
            "changes": [
                {
                    "at": stamp(c.at),
                    "from": c.from_status,
                    "to": c.to_status,
                    "cause": c.cause,
                    "actor": c.actor,
                    "message": c.message,
                }
                for c in changes
            ],
            "transitions": [
                {
                    "id": t.id,
                    "kind": t.kind,
                    "status": t.status,
                    "cause": t.cause,
                    "actor": t.actor,
                    "reason": t.reason,
                    "error": t.error,
                    "created_at": stamp(t.created_at),
                    "started_at": stamp(t.started_at),
                    "finished_at": stamp(t.finished_at),
                    "stages": [
                        {"stage": name, "seconds": seconds}
                        for name, seconds in json.loads(t.stages or "[]")
                        if seconds is not None  # the stage under way
                    ],
                    "warnings": json.loads(t.warnings or "[]"),
                }
                for t in jobs
            ],
        }
    )


@bp.post("/workspaces/<workspace_id>/activity")
@token_required("workspaces:write")
@described(body=schemas.KeepAlive, body_optional=True, returns=schemas.Workspace)
def keep_alive(workspace_id):
    """An explicit keep-alive: counts as use for the idle auto-stop."""
    ws = _workspace(workspace_id, authz.USE)
    detail = request_body().detail
    activity.record(
        ws.id, "keepalive", (detail or f"API keep-alive by {_user().username}")[:200], force=True
    )
    return jsonify(_dict(ws))


@bp.put("/workspaces/<workspace_id>/ttl")
@token_required("workspaces:write", any_workspace=False)
@described(body=schemas.TtlChange, returns=schemas.Workspace)
def set_ttl(workspace_id):
    """Set or extend the deletion deadline: ttl from now, expires_at, or ttl null."""
    ws = _workspace(workspace_id, authz.MANAGE)
    body = request_body().model_dump(exclude_unset=True)
    ws = service.set_ttl(ws, body, actor=_user().username, cause="api")
    return jsonify(_dict(ws))


@bp.put("/workspaces/<workspace_id>/config")
@token_required("workspaces:write", any_workspace=False)
@described(body=schemas.ConfigChoice, status=202, returns=schemas.Accepted, errors=(409,))
def choose_config(workspace_id):
    """Choose which of its repository's configs a workspace whose create failed is
    built with (a repository with several asks), and try the create again."""
    ws = _workspace(workspace_id, authz.MANAGE)
    job = service.choose_config(
        ws,
        request_body().config,
        cause="api",
        actor=_user().username,
        data_dir=_settings().data_dir,
        source_ip=request.remote_addr,
    )
    ws = Workspace.get_by_id(ws.id)
    return _accepted(ws, job)


@bp.put("/workspaces/<workspace_id>/idle-timeout")
@token_required("workspaces:write", any_workspace=False)
@described(body=schemas.IdleTimeoutChange, returns=schemas.Workspace)
def set_idle_timeout(workspace_id):
    """Change the idle timeout within the template's range (0 = never, if allowed)."""
    ws = _workspace(workspace_id, authz.MANAGE)
    value = request_body().idle_timeout
    ws = service.set_idle_timeout(ws, value, actor=_user().username, cause="api")
    return jsonify(_dict(ws))


@bp.post("/workspaces/<workspace_id>/backup")
@token_required("workspaces:write", any_workspace=False)
@described(query=schemas.ActionOptions, status=202, returns=schemas.Accepted, errors=(409,))
def backup_workspace(workspace_id):
    """Back up the workspace's volumes (tarballs).

    With ``wait``, the answer comes when the job has ended."""
    return _transition(workspace_id, "backup", request_query().wait)


def _port_error(exc: apps.PortError):
    raise ApiError(exc.status, "invalid_port" if exc.status == 422 else "port", exc.message)


@bp.get("/workspaces/<workspace_id>/ports")
@token_required("workspaces:read")
@described(returns=[schemas.Port])
def list_ports(workspace_id):
    """Ports open in the browser, with their URLs and whether a server listens on each."""
    ws = _workspace(workspace_id)
    found = listening.listening(_settings(), ws)
    heard = None if found is None else {h.port for h in found}
    return jsonify([apps.describe_port(_settings(), ws, p, heard) for p in apps.ports(ws)])


@bp.get("/workspaces/<workspace_id>/listening")
@token_required("workspaces:read")
@described(returns=[schemas.Listening], errors=(409, 503))
def listening_ports(workspace_id):
    """The ports servers listen on inside the running workspace (read at most every
    10 s), whether each is open in the browser: what to open next."""
    ws = _workspace(workspace_id)
    if ws.status != "running":
        raise ApiError(409, "invalid_state", f"workspace {ws.name!r} is {ws.status}, not running")
    heard = listening.listening(_settings(), ws)
    if heard is None:
        raise ApiError(503, "unavailable", "the workspace's ports could not be read just now")
    opened = {p.port for p in apps.ports(ws)}
    return jsonify(
        [
            {"port": h.port, "loopback_only": h.loopback_only, "open": h.port in opened}
            for h in heard
        ]
    )


@bp.put("/workspaces/<workspace_id>/ports/<port>")
@token_required("workspaces:write", any_workspace=False)
@described(body=schemas.PortChange, body_optional=True, returns=schemas.Port, errors=(409,))
def open_port(workspace_id, port):
    """Open a port in the browser, or change it (shared: every signed-in user)."""
    ws = _workspace(workspace_id, authz.MANAGE)
    body = request_body()
    if body.shared and current_token().workspace_id is not None:
        # Like sharing the workspace itself: not for a token that lives inside it.
        raise ApiError(
            403, "token_limited", "a token limited to one workspace cannot share its ports"
        )
    try:
        row = apps.open_port(
            ws,
            port,
            shared=body.shared,
            label=body.label,
            allow_shared=_settings().apps_domain != "none",
        )
    except apps.PortError as exc:
        _port_error(exc)
    return jsonify(apps.describe_port(_settings(), ws, row))


@bp.delete("/workspaces/<workspace_id>/ports/<port>")
@token_required("workspaces:write", any_workspace=False)
@described(status=204, errors=(409,))
def close_port(workspace_id, port):
    """Close a port (not one from forwardPorts)."""
    ws = _workspace(workspace_id, authz.MANAGE)
    try:
        apps.close_port(ws, port)
    except apps.PortError as exc:
        _port_error(exc)
    return "", 204


@bp.get("/backups")
@token_required("workspaces:read", any_workspace=False)
@described(returns=[dict])
def list_backups():
    """Workspace backups (one's own; all for admins), and database backups for admins."""
    user, settings = _user(), _settings()
    everything = authz.can(user, "workspaces.read_all")
    found = volume_backups.list_backups(settings, None if everything else user.username)
    if everything:
        found += db_backups.list_backups(settings)
    return jsonify([b.to_dict() for b in found])


def _accepted(ws, job):
    return jsonify(
        {
            "workspace": _dict(ws),
            "transition": {"id": job.id, "kind": job.kind, "status": job.status},
        }
    ), 202


def _transition(workspace_id, kind: str, wait: float, options: dict | None = None):
    # Those a workspace is shared with may start it (as opening its IDE would), not more.
    ws = _workspace(workspace_id, authz.USE if kind == "start" else authz.MANAGE)
    with _slot_for(wait):
        job = service.request(
            ws,
            kind,
            cause="api",
            actor=_user().username,
            options=options,
            data_dir=_settings().data_dir,
            source_ip=request.remote_addr,
        )
        if wait:
            job = service.wait_for_job(job, wait, _settings().data_dir)
            ws = Workspace.get_or_none(Workspace.id == ws.id) or ws
    return _accepted(ws, job)


@bp.post("/workspaces/<workspace_id>/start")
@token_required("workspaces:write")
@described(query=schemas.ActionOptions, status=202, returns=schemas.Accepted, errors=(409,))
def start_workspace(workspace_id):
    """Start a stopped workspace.

    With ``wait``, the answer comes when the workspace runs or the job has ended: a start
    with nothing left to set up runs before its job has written the postStart marker (a
    stop or rebuild asked for then waits for that in the queue)."""
    return _transition(workspace_id, "start", request_query().wait)


@bp.post("/workspaces/<workspace_id>/stop")
@token_required("workspaces:write", any_workspace=False)
@described(query=schemas.ActionOptions, status=202, returns=schemas.Accepted, errors=(409,))
def stop_workspace(workspace_id):
    """Stop a workspace (SIGTERM, then kill).

    With ``wait``, the answer comes when the job has ended."""
    return _transition(workspace_id, "stop", request_query().wait)


@bp.post("/workspaces/<workspace_id>/restart")
@token_required("workspaces:write", any_workspace=False)
@described(query=schemas.ActionOptions, status=202, returns=schemas.Accepted, errors=(409,))
def restart_workspace(workspace_id):
    """Stop and start again.

    With ``wait``, the answer comes when the job has ended."""
    return _transition(workspace_id, "restart", request_query().wait)


@bp.post("/workspaces/<workspace_id>/rebuild")
@token_required("workspaces:write", any_workspace=False)
@described(query=schemas.ActionOptions, status=202, returns=schemas.Accepted, errors=(409,))
def rebuild_workspace(workspace_id):
    """Rebuild the image; volumes are kept.

    With ``wait``, the answer comes when the job has ended."""
    return _transition(workspace_id, "rebuild", request_query().wait)


@bp.delete("/workspaces/<workspace_id>")
@token_required("workspaces:write", any_workspace=False)
@described(query=schemas.DeleteOptions, status=202, returns=schemas.Accepted, errors=(409,))
def delete_workspace(workspace_id):
    """Delete a workspace (volumes too, unless keep_volumes=true)."""
    query = request_query()
    return _transition(workspace_id, "delete", query.wait, {"keep_volumes": query.keep_volumes})


@bp.get("/workspaces/<workspace_id>/logs")
@token_required("workspaces:read")
@described(query=schemas.LogOptions, returns="text/event-stream")
@long_lived
def workspace_logs(workspace_id):
    """The latest job's log as Server-Sent Events, followed live.

    Data lines, then an ``end`` event."""
    ws = _workspace(workspace_id)
    stream = logs.sse(ws.id, follow=request_query().follow)
    return Response(
        stream_with_context(stream),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _shares(ws) -> list[dict]:
    return [{**s, "created_at": stamp(s["created_at"])} for s in sharing.shares_of(ws)]


@bp.get("/workspaces/<workspace_id>/shares")
@token_required("workspaces:read")
@described(returns=[dict])
def list_shares(workspace_id):
    """Who the workspace is shared with."""
    return jsonify(_shares(_workspace(workspace_id)))


@bp.put("/workspaces/<workspace_id>/shares/<kind>/<name>")
@token_required("workspaces:write", any_workspace=False)
@described(returns=[dict], errors=(409, 422))
def add_share(workspace_id, kind, name):
    """Share with a user (``users/<name>``) or a group (``groups/<name>``)."""
    ws = _change_share(sharing.share, workspace_id, kind, name)
    return jsonify(_shares(ws))


@bp.delete("/workspaces/<workspace_id>/shares/<kind>/<name>")
@token_required("workspaces:write", any_workspace=False)
@described(status=204, errors=(422,))
def remove_share(workspace_id, kind, name):
    """Stop sharing with that user or group."""
    _change_share(sharing.unshare, workspace_id, kind, name)
    return "", 204


def _change_share(change, workspace_id, kind: str, name: str):
    ws = _workspace(workspace_id, authz.MANAGE)
    try:
        change(
            ws, kind.removesuffix("s"), name, actor=_user().username, source_ip=request.remote_addr
        )
    except sharing.ShareError as exc:
        raise ApiError(exc.status, "invalid_share", exc.message) from None
    return ws


@bp.get("/workspaces/<workspace_id>/egress")
@token_required("workspaces:read")
@described(returns=dict)
def get_egress(workspace_id):
    """The allowlist (template's and the workspace's own) and the latest decisions."""
    ws = _workspace(workspace_id)
    return jsonify(service.egress_view(ws))


@bp.put("/workspaces/<workspace_id>/egress")
@token_required("workspaces:write", any_workspace=False)
@described(body=schemas.EgressChange, returns=dict)
def set_egress(workspace_id):
    """Replace the workspace's own allowlist (host, host:port, *.domain).

    Not with a token limited to the workspace: a sandbox cannot widen its own way out."""
    ws = _workspace(workspace_id, authz.MANAGE)
    allow = request_body().allow
    service.set_egress(ws, allow, actor=_user().username, source_ip=request.remote_addr)
    return jsonify(service.egress_view(Workspace.get_by_id(ws.id)))
