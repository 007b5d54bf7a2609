"""The signed-in home: the person's workspaces, creating them, and the templates."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required

from app import authz, platform
from app.backups import workspaces as volume_backups
from app.messages import sentence
from app.models import Recording, StateChange, Template, Transition
from app.slots import long_lived
from app.states import Kind
from app.workspaces import apps, logs, recordings, service, sharing

bp = Blueprint("dashboard", __name__)
ACTIONS = ("start", "stop", "restart", "rebuild", "delete", "backup")


def _settings():
    return current_app.config["BERTH_SETTINGS"]


def _visible(workspace_id, needed: str = authz.READ):
    try:
        return service.get_visible(current_user.row, workspace_id, needed=needed)
    except service.WorkspaceError as exc:
        abort(exc.status, sentence(exc.message))


def _templates():
    return list(Template.select().where(Template.enabled).order_by(Template.name))


@bp.route("/")
@login_required
def index():
    mine = service.visible_to(current_user.row).order_by(service.Workspace.name)
    rows = [ws for ws in mine if ws.owner_id == current_user.row.id]
    shared = [
        ws
        for ws in service.visible_to(current_user.row).where(
            service.Workspace.id.in_(authz.shared_with(current_user.row))
        )
    ]
    return render_template(
        "dashboard/workspaces.html",
        workspaces=rows,
        shared=shared,
        may_create=authz.can(current_user.row, "workspaces.create"),
        preparation=platform.preparation(),
        # Build lines and errors may name hosts, paths, an admin's Dockerfile: admins only.
        show_details=authz.can(current_user.row, "settings.manage"),
        ide_urls={
            ws.id: apps.url(_settings(), apps.Target(ws.owner.username, ws.name))
            for ws in rows + shared
        },
    )


@bp.route("/workspaces/status.json")
@login_required
def statuses():
    rows = service.visible_to(current_user.row)
    return jsonify({str(ws.id): {"status": ws.status, "error": ws.error} for ws in rows})


@bp.route("/workspaces/new", methods=["GET", "POST"])
@login_required
def create():
    if not authz.can(current_user.row, "workspaces.create"):
        abort(403, f"Your role ({current_user.role}) may not create workspaces.")
    templates = _templates()
    backups = volume_backups.list_backups(
        _settings(), None if current_user.is_admin else current_user.username
    )

    def again(status=200):
        return render_template(
            "dashboard/new.html", templates=templates, backups=backups, form=request.values
        ), status

    if request.method == "GET":
        return again()
    form = request.form
    parameters = {}
    for name, cast in (("cpu", float), ("memory", int)):
        if form.get(name, "").strip():
            try:
                parameters[name] = cast(form[name])
            except ValueError:
                flash(f"{name}: {form[name]!r} is not a number.", "error")
                return again(422)
    if form.get("idle_timeout", "").strip():
        parameters["idle_timeout"] = form["idle_timeout"].strip()
    repo = (
        {
            "url": form["repo_url"].strip(),
            "ref": form.get("repo_ref", "").strip() or None,
            "config": form.get("repo_config", "").strip() or None,
        }
        if form.get("repo_url", "").strip()
        else None
    )
    try:
        restore = form.get("restore") or None
        ws = service.create(
            current_user.row,
            form.get("name", "").strip(),
            template_name=None if restore else (form.get("template") or None),
            repo=repo,
            parameters=parameters or None,
            ttl=form.get("ttl", "").strip() or None,
            cause="user",
            actor=current_user.username,
            data_dir=_settings().data_dir,
            local_roots=_settings().repo_roots,
            private_networks=_settings().private_networks,
            restore=service.backup_for(current_user.row, restore, _settings()) if restore else None,
            source_ip=request.remote_addr,
        )
    except service.WorkspaceError as exc:
        flash(f"Workspace not created: {exc.message}.", "error")
        return again(exc.status)
    flash(f"Workspace {ws.name} is being created.", "success")
    return redirect(url_for("dashboard.workspace", workspace_id=ws.id))


@bp.route("/workspaces/<int:workspace_id>")
@login_required
def workspace(workspace_id):
    ws = _visible(workspace_id)
    history = ws.state_changes.order_by(StateChange.id.desc()).limit(50)
    # The log shown is the latest job's a person asked for, not reconcile's bookkeeping.
    jobs = ws.transitions.where(Transition.kind != Kind.RECONCILE)
    jobs = jobs.order_by(Transition.id.desc()).limit(20)
    return render_template(
        "dashboard/workspace.html",
        ws=ws,
        history=list(history),
        jobs=list(jobs),
        parameters=json.loads(ws.parameters),
        config_choices=json.loads(ws.repo_choices or "[]") if ws.status == "failed" else [],
        ssh_command=service.ssh_command(
            ws, current_user.row, _settings().ssh_host, _settings().ssh_port
        ),
        activity=service.activity.summary(ws.id),
        outlook=service.outlook(ws),
        urls=apps.urls(_settings(), ws),
        ports=apps.ports(ws),
        idle_timeout=service.idle_timeout_text(ws),
        access=authz.level(current_user.row, ws),
        egress=service.egress_view(ws, limit=30),
        recordings=list(ws.recordings.order_by(Recording.id.desc()).limit(50))
        if recordings.may_read(current_user.row, ws)
        else [],
        shares=sharing.shares_of(ws),
        backups=[
            b
            for b in volume_backups.list_backups(_settings(), ws.owner.username)
            if b.meta.get("workspace_id") == ws.id
        ],
    )


@bp.route("/workspaces/<int:workspace_id>/ttl", methods=["POST"])
@login_required
def set_ttl(workspace_id):
    ws = _visible(workspace_id, authz.MANAGE)
    value = request.form.get("ttl", "").strip()
    return _change(
        ws,
        lambda: service.set_ttl(
            ws, {"ttl": value or None}, actor=current_user.username, cause="user"
        ),
        f"Time to live of {ws.name} set.",
    )


@bp.route("/workspaces/<int:workspace_id>/config", methods=["POST"])
@login_required
def choose_config(workspace_id):
    ws = _visible(workspace_id, authz.MANAGE)
    config = request.form.get("config", "")
    return _change(
        ws,
        lambda: service.choose_config(
            ws,
            config,
            actor=current_user.username,
            data_dir=_settings().data_dir,
            source_ip=request.remote_addr,
        ),
        f"{ws.name} is being created with {config}.",
    )


@bp.route("/workspaces/<int:workspace_id>/idle-timeout", methods=["POST"])
@login_required
def set_idle_timeout(workspace_id):
    ws = _visible(workspace_id, authz.MANAGE)
    value = request.form.get("idle_timeout", "").strip()
    return _change(
        ws,
        lambda: service.set_idle_timeout(ws, value, actor=current_user.username, cause="user"),
        f"Idle timeout of {ws.name} set.",
    )


@bp.route("/workspaces/<int:workspace_id>/ports", methods=["POST"])
@login_required
def open_port(workspace_id):
    ws = _visible(workspace_id, authz.MANAGE)
    port = request.form.get("port", "").strip()
    return _change(
        ws,
        lambda: apps.open_port(
            ws,
            port,
            shared=request.form.get("shared") == "on",
            allow_shared=_settings().apps_domain != "none",
            label=request.form.get("label", "").strip() or None,
        ),
        f"Port {port} of {ws.name} is open in the browser.",
    )


@bp.route("/workspaces/<int:workspace_id>/ports/<int:port>/close", methods=["POST"])
@login_required
def close_port(workspace_id, port):
    ws = _visible(workspace_id, authz.MANAGE)
    return _change(ws, lambda: apps.close_port(ws, port), f"Port {port} of {ws.name} closed.")


@bp.route("/workspaces/<int:workspace_id>/shares", methods=["POST"])
@login_required
def share(workspace_id):
    ws = _visible(workspace_id, authz.MANAGE)
    kind, name = request.form.get("kind", "user"), request.form.get("name", "").strip()
    return _change(
        ws,
        lambda: sharing.share(
            ws, kind, name, actor=current_user.username, source_ip=request.remote_addr
        ),
        f"{ws.name} is shared with {kind} {name}.",
    )


@bp.route("/workspaces/<int:workspace_id>/shares/<kind>/<name>/remove", methods=["POST"])
@login_required
def unshare(workspace_id, kind, name):
    ws = _visible(workspace_id, authz.MANAGE)
    return _change(
        ws,
        lambda: sharing.unshare(
            ws, kind, name, actor=current_user.username, source_ip=request.remote_addr
        ),
        f"{ws.name} is no longer shared with {kind} {name}.",
    )


def _change(ws, change, done: str):
    try:
        change()
    except (service.WorkspaceError, apps.PortError, sharing.ShareError) as exc:
        flash(sentence(exc.message), "error")
    else:
        flash(done, "success")
    return redirect(url_for("dashboard.workspace", workspace_id=ws.id))


@bp.route("/workspaces/<int:workspace_id>/<action>", methods=["POST"])
@login_required
def act(workspace_id, action):
    if action not in ACTIONS:
        abort(404, "There is no such action.")
    # Those it is shared with may start it (as opening its IDE would); not more.
    ws = _visible(workspace_id, authz.USE if action == "start" else authz.MANAGE)
    options = (
        {"keep_volumes": request.form.get("keep_volumes") == "on"} if action == "delete" else None
    )
    try:
        service.request(
            ws,
            action,
            cause="user",
            actor=current_user.username,
            options=options,
            data_dir=_settings().data_dir,
            source_ip=request.remote_addr,
        )
    except service.WorkspaceError as exc:
        flash(sentence(exc.message), "error")
    else:
        flash(f"{action.capitalize()} of {ws.name} requested.", "success")
    if action == "delete":
        return redirect(url_for("dashboard.index"))
    return redirect(url_for("dashboard.workspace", workspace_id=ws.id))


@bp.route("/workspaces/<int:workspace_id>/logs")
@login_required
@long_lived
def workspace_logs(workspace_id):
    ws = _visible(workspace_id)
    return Response(
        stream_with_context(logs.sse(ws.id)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.route("/templates")
@login_required
def templates():
    rows = _templates()
    return render_template(
        "dashboard/templates.html",
        templates=rows,
        parameters={t.id: json.loads(t.parameters) for t in rows},
    )


def _recording(workspace_id: int, recording_id: int):
    try:
        ws = service.get_visible(current_user.row, workspace_id, include_deleted=True)
    except service.WorkspaceError as exc:
        abort(exc.status, sentence(exc.message))
    if not recordings.may_read(current_user.row, ws):
        abort(403, "Recordings are read by the workspace's owner, admins and auditors only.")
    row = Recording.get_or_none((Recording.id == recording_id) & (Recording.workspace == ws))
    if row is None:
        abort(404, "There is no such recording.")
    return ws, row


@bp.route("/workspaces/<int:workspace_id>/recordings/<int:recording_id>")
@login_required
def recording(workspace_id, recording_id):
    """Replay an SSH session in Berth's player, or show an exec's command and output."""
    ws, row = _recording(workspace_id, recording_id)
    found = recordings.content(row)
    if found is None:
        abort(410, sentence(recordings.GONE))
    run = json.loads(found[0]) if row.kind == "exec" else None
    return render_template("dashboard/recording.html", ws=ws, row=row, run=run)


@bp.route("/workspaces/<int:workspace_id>/recordings/<int:recording_id>.cast")
@login_required
def recording_cast(workspace_id, recording_id):
    ws, row = _recording(workspace_id, recording_id)
    found = recordings.content(row)
    if found is None:
        abort(410, sentence(recordings.GONE))
    return Response(found[0], mimetype=found[1])
