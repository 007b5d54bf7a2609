"""The signed-in home: the person's workspaces, creating them, and the templates."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    get_template_attribute,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required

from app import authz, platform, states
from app.backups import workspaces as volume_backups
from app.messages import sentence
from app.models import Recording, StateChange, Template, Transition
from app.slots import long_lived
from app.ssh import hostkey, keys
from app.states import Kind
from app.web import workspace_view
from app.workspaces import apps, listening, logs, recordings, service, sharing

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


# The list offers the quick actions; the rest is on each workspace's page.
ROW_ACTIONS = ("start", "stop")


def _rows(workspaces: list, access: str) -> list[dict]:
    """One entry per workspace of the list, in a fixed number of queries."""
    ids = [ws.id for ws in workspaces]
    busy = service.active_kinds(ids)
    used = service.activity.uses_of(ids)
    rows = []
    for ws in workspaces:
        uses = used.get(ws.id, [])
        offered = workspace_view.actions(ws, access, busy.get(ws.id, []))
        rows.append(
            {
                "ws": ws,
                # A job asked for and not done yet: said at once, before the status moves.
                "busy": [kind for kind in busy.get(ws.id, []) if kind != "reconcile"],
                "actions": [a for a in offered if a in ROW_ACTIONS],
                "last_used": max((u.at for u in uses), default=None),
                "outlook": service.outlook(ws, uses=uses),
                "ide_url": apps.url(_settings(), apps.Target(ws.owner.username, ws.name)),
                "search": " ".join(
                    filter(None, [ws.name, ws.owner.username, ws.template and ws.template.name,
                                  ws.repo_url])
                ).lower(),
            }
        )  # fmt: skip
    return rows


def _list_page() -> dict:
    mine = list(
        service.visible_to(current_user.row)
        .where(service.Workspace.owner == current_user.row.id)
        .order_by(service.Workspace.name)
    )
    shared = list(
        service.visible_to(current_user.row)
        .where(service.Workspace.id.in_(authz.shared_with(current_user.row)))
        .order_by(service.Workspace.name)
    )
    return {"mine": _rows(mine, authz.MANAGE), "shared": _rows(shared, authz.USE)}


def _busy(page: dict) -> bool:
    """Whether a row is moving (the list then refreshes often)."""
    rows = page["mine"] + page["shared"]
    return any(r["ws"].status in states.TRANSITIONAL or r["busy"] for r in rows)


def _filtered(rows: list[dict], text: str, status: str) -> list[dict]:
    """The rows a search shows (the page filters as one types; this is for no script)."""
    text = text.strip().lower()
    return [
        r
        for r in rows
        if (not text or text in r["search"]) and (not status or r["ws"].status == status)
    ]


@bp.route("/")
@login_required
def index():
    page = _list_page()
    text, status = request.args.get("q", ""), request.args.get("status", "")
    return render_template(
        "dashboard/workspaces.html",
        page={
            "mine": _filtered(page["mine"], text, status),
            "shared": _filtered(page["shared"], text, status),
        },
        total=len(page["mine"]) + len(page["shared"]),
        busy=_busy(page),
        query={"q": text, "status": status},
        statuses=[str(s) for s in states.LIVE if s != states.Status.POOLED],
        may_create=authz.can(current_user.row, "workspaces.create"),
        preparation=platform.preparation(),
        # Build lines and errors may name hosts, paths, an admin's Dockerfile: admins only.
        show_details=authz.can(current_user.row, "settings.manage"),
    )


@bp.route("/workspaces/live")
@login_required
def index_live():
    """The list's rows as HTML, for berth.js to swap in without a reload."""
    page = _list_page()
    parts = get_template_attribute("dashboard/workspaces_parts.html", "rows")
    return jsonify(
        {
            "settled": not _busy(page),
            "parts": {
                "mine": str(parts(page["mine"], "mine")),
                "shared": str(parts(page["shared"], "shared")),
            },
        }
    )


@bp.route("/workspaces/new", methods=["GET", "POST"])
@login_required
def create():
    if not authz.can(current_user.row, "workspaces.create"):
        abort(403, f"Your role ({current_user.role}) may not create workspaces.")
    templates = _templates()
    backups = volume_backups.list_backups(
        _settings(), None if current_user.is_admin else current_user.username
    )

    def again(status=200, errors=None):
        return render_template(
            "dashboard/new.html",
            templates=templates,
            backups=backups,
            form=request.values,
            errors=errors or {},
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
                flash("Workspace not created: see the marked field.", "error")
                return again(
                    422,
                    {
                        name: f"{form[name]!r} is not a whole number"
                        if cast is int
                        else f"{form[name]!r} is not a number"
                    },
                )
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
        field = _field_of(exc)
        if field is None:
            flash(f"Workspace not created: {exc.message}.", "error")
            return again(exc.status)
        flash("Workspace not created: see the marked field.", "error")
        return again(exc.status, {field: sentence(exc.message)})
    flash(f"Workspace {ws.name} is being created.", "success")
    return redirect(url_for("dashboard.workspace", workspace_id=ws.id))


def _page(ws) -> dict:
    """What the workspace page shows; the live parts come from the same values."""
    settings = _settings()
    access = authz.level(current_user.row, ws)
    # The log and timeline shown are of the latest job a person asked for, not
    # reconcile's bookkeeping.
    # Without its log, which can be large: the live parts poll this (the page and the
    # log stream read the log themselves).
    columns = [f for f in Transition._meta.sorted_fields if f is not Transition.log]
    jobs = Transition.select(*columns).where(
        (Transition.workspace == ws) & (Transition.kind != Kind.RECONCILE)
    )
    job = jobs.order_by(Transition.id.desc()).first()
    open_ports = apps.ports(ws)
    heard = listening.listening(settings, ws) if access in (authz.USE, authz.MANAGE) else None
    return {
        "ws": ws,
        "access": access,
        "job": job,
        "timeline": workspace_view.timeline(job),
        "job_warnings": workspace_view.warnings(job),
        "actions": workspace_view.actions(ws, access),
        "history": list(ws.state_changes.order_by(StateChange.id.desc()).limit(50)),
        "parameters": json.loads(ws.parameters),
        "config_choices": json.loads(ws.repo_choices or "[]") if ws.status == "failed" else [],
        "activity": service.activity.summary(ws.id),
        "outlook": service.outlook(ws),
        "urls": apps.urls(settings, ws),
        "ports": open_ports,
        # Servers listening inside that are not open yet: offered with one click.
        "detected": [
            found
            for found in heard or []
            if found.port not in {p.port for p in open_ports} | apps.RESERVED_PORTS
        ]
        if access == authz.MANAGE
        else [],
        # Whether something answers on each open port now (None: not known).
        "heard": None if heard is None else {found.port for found in heard},
        "idle_timeout": service.idle_timeout_text(ws),
        "has_keys": current_user.row.ssh_keys.exists(),
        # Only its owner hears of her git credentials here (and only of a person's).
        "own": current_user.row.id == ws.owner_id
        and not (ws.template is not None and ws.template.profile == "agent"),
        "ide": workspace_view.ide_health(
            ws,
            not any(s["name"] == "tools" and s["state"] != "done" for s in platform.preparation()),
        ),
    }


LIVE_PARTS = ("head", "alerts", "timeline", "facts", "ports", "history")


# Which field of the create form a refusal is about, by its code (and for parameters,
# the parameter it names); None: the whole request (a quota, say), said at the top.
_FIELDS = {
    "invalid_name": "name",
    "name_taken": "name",
    "unknown_template": "template",
    "missing_source": "template",
    "invalid_repo": "repo_url",
    "no_repository": "repo_url",
    "invalid_config": "repo_config",
    "invalid_ttl": "ttl",
}


def _field_of(exc: service.WorkspaceError) -> str | None:
    if exc.code in ("invalid_parameter", "invalid_parameters"):
        named = [f for f in ("cpu", "memory", "idle_timeout") if f in exc.message]
        return named[0] if named else None
    return _FIELDS.get(exc.code)


@bp.route("/workspaces/<int:workspace_id>")
@login_required
def workspace(workspace_id):
    ws = _visible(workspace_id)
    settings = _settings()
    page = _page(ws)
    log = Transition.get_by_id(page["job"].id).log if page["job"] else ""
    return render_template(
        "dashboard/workspace.html",
        page=page,
        log=log,
        **page,
        ssh_command=service.ssh_command(ws, current_user.row, settings.ssh_host, settings.ssh_port),
        desktop=workspace_view.desktop(
            ws,
            current_user.row,
            settings.ssh_host,
            settings.ssh_port,
            f"berth-{settings.ssh_host}-{settings.ssh_port}",
        ),
        host_key_fingerprint=keys.fingerprint(hostkey.load_or_create(settings.data_dir).asbytes()),
        egress=service.egress_view(ws, limit=30),
        recordings=list(ws.recordings.order_by(Recording.id.desc()).limit(50))
        if recordings.may_read(current_user.row, ws)
        else [],
        shares=sharing.shares_of(ws),
        backups=[
            b
            for b in volume_backups.list_backups(settings, ws.owner.username)
            if b.meta.get("workspace_id") == ws.id
        ],
    )


@bp.route("/workspaces/<int:workspace_id>/live")
@login_required
def workspace_live(workspace_id):
    """The page's changing parts as HTML, for berth.js to swap in without a reload."""
    ws = _visible(workspace_id)
    page = _page(ws)
    parts = get_template_attribute("dashboard/workspace_parts.html", "render_part")
    return jsonify(
        {
            "status": ws.status,
            "job": page["job"].id if page["job"] else None,
            "settled": ws.status not in states.TRANSITIONAL
            and not (page["job"] and page["job"].status in states.ACTIVE_JOB),
            "parts": {name: str(parts(name, page)) for name in LIVE_PARTS},
        }
    )


@bp.route("/workspaces/<int:workspace_id>/confirm/<action>")
@login_required
def confirm(workspace_id, action):
    """Rebuild and delete lose something: this page says what before they are asked."""
    if action not in workspace_view.CONFIRMED:
        abort(404, "There is no such action.")
    ws = _visible(workspace_id, authz.MANAGE)
    return render_template(
        "dashboard/confirm.html",
        ws=ws,
        action=action,
        offered=action in workspace_view.actions(ws, authz.MANAGE),
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
        # "Open" on a detected port: opened, then off to it (the port is valid by then).
        then=(
            (
                lambda: url_for(
                    "apps.open_app", to=apps.urls(_settings(), ws)["ports"][str(int(port))]
                )
            )
            if request.form.get("then") == "open"
            else None
        ),
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


def _change(ws, change, done: str, then=None):
    """Make ``change``, say how it went, and go back to the page (or, once done, where
    ``then()`` says: the port just opened)."""
    try:
        change()
    except (service.WorkspaceError, apps.PortError, sharing.ShareError) as exc:
        flash(sentence(exc.message), "error")
    else:
        flash(done, "success")
        if then:
            return redirect(then())
    return redirect(url_for("dashboard.workspace", workspace_id=ws.id))


@bp.route("/workspaces/<int:workspace_id>/<action>", methods=["POST"])
@login_required
def act(workspace_id, action):
    if action not in ACTIONS:
        abort(404, "There is no such action.")
    # Those it is shared with may start it (as opening its IDE would); not more.
    ws = _visible(workspace_id, authz.USE if action == "start" else authz.MANAGE)
    if action in workspace_view.CONFIRMED and request.form.get("confirmed") != "yes":
        return redirect(url_for("dashboard.confirm", workspace_id=ws.id, action=action))
    options = (
        {
            "keep_volumes": request.form.get("keep_volumes") == "on",
            "backup_first": request.form.get("backup_first") == "on",
        }
        if action == "delete"
        else None
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
    if action == "delete" or request.form.get("next") == "list":
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
