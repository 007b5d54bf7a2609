"""The admin area: an overview, then a page each for people, groups and quotas,
workspaces, templates, jobs and backups, the audit log and costs."""

import csv
import io
import json
import secrets
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from app import accounts, archives, audit, authz, costs, groups
from app.backups import database as db_backups
from app.backups import workspaces as volume_backups
from app.durations import parse_time
from app.http import auditing
from app.models import ROLES, Budget, Group, Quota, ScheduledJob, Template, User, Workspace, utcnow
from app.scheduler import register, run_recorded
from app.states import Status
from app.web import template_form
from app.workspaces import quotas, service, templates
from app.workspaces.scheduled import nightly_backup

bp = Blueprint("admin", __name__, url_prefix="/admin")


def right_required(*rights: str):
    """The signed-in person's role must grant one of ``rights`` (app.authz)."""

    def decorate(view):
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            if not any(authz.can(current_user.row, right) for right in rights):
                allowed = [
                    role + "s"
                    for role, granted in authz.ROLE_RIGHTS.items()
                    if granted & set(rights)
                ]
                who = (
                    ", ".join(allowed[:-1]) + " or " + allowed[-1]
                    if len(allowed) > 1
                    else allowed[0]
                )
                abort(403, f"This page is for {who}; your role is {current_user.role}.")
            return view(*args, **kwargs)

        return wrapper

    return decorate


admin_required = right_required("users.manage")


def _user_or_404(user_id: int) -> User:
    user = User.get_or_none(User.id == user_id)
    if user is None:
        abort(404, "There is no such user.")
    return user


# The admin area's pages, and the rights that open each (the sub-navigation shows a
# person only those their role opens).
SECTIONS = (
    ("admin.index", "Overview", ("users.manage", "templates.manage", "audit.read")),
    ("admin.people", "People", ("users.manage", "audit.read")),
    ("admin.groups_and_quotas", "Groups and quotas", ("users.manage", "audit.read")),
    ("admin.all_workspaces", "Workspaces", ("users.manage", "audit.read")),
    ("admin.templates_page", "Templates", ("templates.manage",)),
    ("admin.operations", "Jobs and backups", ("users.manage", "audit.read")),
    ("admin.audit_log", "Audit", ("audit.read",)),
    ("admin.cost_report", "Costs", ("workspaces.read_all",)),
)
PER_PAGE = 50


@bp.context_processor
def _sections():
    if not current_user.is_authenticated:
        return {}
    mine = [
        (endpoint, label)
        for endpoint, label, rights in SECTIONS
        if any(authz.can(current_user.row, right) for right in rights)
    ]
    return {"admin_sections": mine}


@dataclass
class Paging:
    page: int
    pages: int
    url: Callable[[int], str]


def _paged(query, endpoint: str, keep: tuple[str, ...] = ("q", "status")):
    """One page of ``query`` (PER_PAGE rows, ?page=N) and how to reach the others, the
    page's own filters (``keep``) kept and nothing else."""
    total = query.count()
    pages = max(1, -(-total // PER_PAGE))
    try:
        page = min(max(1, int(request.args.get("page", 1))), pages)
    except ValueError:
        page = 1
    args = {k: request.args[k] for k in keep if request.args.get(k)}
    paging = Paging(page, pages, lambda n: url_for(endpoint, **args, page=n))
    return list(query.paginate(page, PER_PAGE)), total, paging


@bp.route("/")
@right_required("users.manage", "templates.manage", "audit.read")
def index():
    """Where each part of the admin area stands, with what needs looking at."""
    settings = current_app.config["BERTH_SETTINGS"]
    may = {
        right: authz.can(current_user.row, right) for _, _, rights in SECTIONS for right in rights
    }
    cards = []
    if may["users.manage"] or may["audit.read"]:
        people = User.select().count()
        disabled = User.select().where(User.disabled_at.is_null(False)).count()
        cards.append(
            {
                "name": "people",
                "endpoint": "admin.people",
                "title": "People",
                "summary": f"{people} account{'s' if people != 1 else ''}"
                + (f", {disabled} disabled" if disabled else ""),
                "hint": "Only you so far: add the team on the People page." if people == 1 else "",
            }
        )
        group_count = Group.select().count()
        cards.append(
            {
                "name": "groups",
                "endpoint": "admin.groups_and_quotas",
                "title": "Groups and quotas",
                "summary": f"{group_count} group{'s' if group_count != 1 else ''}, "
                f"{Quota.select().count()} quota(s)",
                "hint": ""
                if group_count
                else "No groups yet: groups share workspaces and carry quotas and budgets.",
            }
        )
        counts = {}
        for ws in service.visible_to(current_user.row).select(Workspace.status):
            counts[ws.status] = counts.get(ws.status, 0) + 1
        cards.append(
            {
                "name": "workspaces",
                "endpoint": "admin.all_workspaces",
                "title": "Workspaces",
                "summary": ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                or "none yet",
                "warning": f"{counts['failed']} failed" if counts.get("failed") else "",
            }
        )
        failing = [
            j.name for j in ScheduledJob.select().where(ScheduledJob.last_outcome == "failed")
        ]
        backups = db_backups.list_backups(settings)
        cards.append(
            {
                "name": "operations",
                "endpoint": "admin.operations",
                "title": "Jobs and backups",
                "summary": f"{ScheduledJob.select().count()} scheduled jobs; latest database "
                "backup "
                + (
                    max(b.taken_at for b in backups).strftime("%Y-%m-%d %H:%M UTC")
                    if backups
                    else "none yet"
                ),
                "warning": ("Failing: " + ", ".join(failing)) if failing else "",
            }
        )
    if may["templates.manage"]:
        enabled = Template.select().where(Template.enabled).count()
        cards.append(
            {
                "name": "templates",
                "endpoint": "admin.templates_page",
                "title": "Templates",
                "summary": f"{enabled} enabled of {Template.select().count()}",
            }
        )
    if may["workspaces.read_all"]:
        priced = _priced_templates()
        cards.append(
            {
                "name": "costs",
                "endpoint": "admin.cost_report",
                "title": "Costs",
                "summary": "Cost per workspace, person and group, and budgets.",
                "hint": ""
                if priced
                else "No template has prices yet, so every cost shows "
                "as 0: set a template's pricing on the Templates page.",
            }
        )
    return render_template("admin/index.html", cards=cards)


def _priced_templates() -> int:
    return Template.select().where(Template.pricing.not_in(["", "{}"])).count()


@bp.route("/people")
@right_required("users.manage", "audit.read")
def people():
    text = request.args.get("q", "").strip().lower()
    query = User.select().order_by(User.username)
    if text:
        query = query.where(User.username.contains(text) | User.email.contains(text))
    users, total, paging = _paged(query, "admin.people")
    return render_template(
        "admin/people.html",
        users=users,
        total=total,
        paging=paging,
        q=text,
        user_groups={u.id: [g.name for g in groups.of(u)] for u in users},
        roles=ROLES,
    )


@bp.route("/groups")
@right_required("users.manage", "audit.read")
def groups_and_quotas():
    group_rows = list(Group.select().order_by(Group.name))
    return render_template(
        "admin/groups.html",
        groups=group_rows,
        group_members={g.id: groups.members(g) for g in group_rows},
        quotas=[
            quotas.to_dict(q.user or q.group)
            for q in Quota.select().order_by(Quota.group, Quota.user)
        ],
    )


@bp.route("/workspaces")
@right_required("users.manage", "audit.read")
def all_workspaces():
    text = request.args.get("q", "").strip().lower()
    status = request.args.get("status", "")
    query = service.visible_to(current_user.row).order_by(Workspace.id.desc())
    if text:
        owners = User.select(User.id).where(User.username.contains(text))
        query = query.where(Workspace.name.contains(text) | Workspace.owner.in_(owners))
    if status:
        query = query.where(Workspace.status == status)
    rows, total, paging = _paged(query, "admin.all_workspaces")
    return render_template(
        "admin/workspaces.html",
        workspaces=rows,
        total=total,
        paging=paging,
        q=text,
        status=status,
        statuses=[str(s) for s in Status if s not in (Status.DELETED, Status.POOLED)],
    )


@bp.route("/templates")
@right_required("templates.manage")
def templates_page():
    return render_template(
        "admin/templates.html", templates=list(Template.select().order_by(Template.name))
    )


@bp.route("/operations")
@right_required("users.manage", "audit.read")
def operations():
    settings = current_app.config["BERTH_SETTINGS"]
    return render_template(
        "admin/operations.html",
        anomalies=[audit.to_dict(r) for r in audit.search(action="anomaly.").limit(20)],
        jobs=list(ScheduledJob.select().order_by(ScheduledJob.name)),
        backups=db_backups.list_backups(settings) + volume_backups.list_backups(settings),
        backup_dir=settings.backups,
    )


@bp.route("/backups", methods=["POST"])
@admin_required
def backup_now():
    """The nightly database backup, now (recorded like the scheduled run)."""
    settings = current_app.config["BERTH_SETTINGS"]
    register("backup", f"cron {settings.backup_schedule} (UTC)")
    detail = run_recorded("backup", lambda: nightly_backup(settings))
    auditing.record("backup.database", outcome="failure" if detail is None else "success")
    if detail is None:
        flash("The backup failed; see Scheduled jobs.", "error")
    else:
        flash(f"Backup written: {detail}.", "success")
    return redirect(url_for("admin.operations"))


@bp.route("/templates", methods=["POST"])
@right_required("templates.manage")
def add_template():
    settings = current_app.config["BERTH_SETTINGS"]
    form = request.form
    name = form.get("name", "").strip()
    upload = request.files.get("archive")
    try:
        if upload and upload.filename:
            folder = settings.data_dir / "templates" / f"upload-{name}-{secrets.token_hex(4)}"
            _extract(upload, folder)
            try:
                template = templates.add(
                    name,
                    form.get("description", ""),
                    form.get("profile", "workspace"),
                    "upload",
                    str(folder),
                )
            except templates.TemplateError:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        else:
            url, _ = service.validate_repo(
                {"url": form.get("git_url", "").strip()},
                settings.repo_roots,
                settings.private_networks,
            )
            template = templates.add(
                name,
                form.get("description", ""),
                form.get("profile", "workspace"),
                "git",
                url,
                form.get("git_ref", "").strip(),
                form.get("git_path", "").strip(),
            )
    except (templates.TemplateError, service.WorkspaceError, ValueError) as exc:
        flash(f"Template not added: {getattr(exc, 'message', exc)}.", "error")
        auditing.record(
            "template.create",
            f"template:{name}",
            "failure",
            error=getattr(exc, "message", str(exc)),
        )
        return redirect(url_for("admin.templates_page"))
    auditing.record("template.create", f"template:{template.name}", source=template.source_kind)
    flash(f"Template {template.name} added.", "success")
    return redirect(url_for("admin.templates_page"))


def _extract(upload, folder) -> None:
    """Unpack an uploaded .tar.gz or .zip, refusing paths that leave the folder."""
    data = io.BytesIO(upload.read())
    folder.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(data):
            with zipfile.ZipFile(data) as archive:
                archives.check_zip(archive)
                archive.extractall(folder)  # noqa: S202  (every member checked above)
        else:
            data.seek(0)
            with tarfile.open(fileobj=data) as archive:
                archives.extract_tar(archive, folder)
    except (tarfile.TarError, zipfile.BadZipFile) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ValueError(f"the upload is not a readable .tar.gz or .zip ({exc})") from None
    except ValueError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _template_or_404(template_id: int) -> Template:
    template = Template.get_or_none(Template.id == template_id)
    if template is None:
        abort(404, "There is no such template.")
    return template


def _editor(template: Template, values: dict, error: Exception | None = None, status: int = 200):
    settings = current_app.config["BERTH_SETTINGS"]
    field = getattr(error, "field", None) or (template_form.field_of(str(error)) if error else None)
    return render_template(
        "admin/template_edit.html",
        t=template,
        values=values,
        error=str(error) if error else None,
        error_field=field,
        history=template_form.history(template),
        number_limits=template_form.NUMBER_LIMITS,
        duration_limits=template_form.DURATION_LIMITS,
        flag_limits=template_form.FLAG_LIMITS,
        price_labels=template_form.PRICE_LABELS,
        currency=settings.currency,
    ), status


@bp.route("/templates/<int:template_id>")
@right_required("templates.manage")
def edit_template(template_id):
    template = _template_or_404(template_id)
    return _editor(
        template,
        {
            "enabled": template.enabled,
            "parameters": json.loads(template.parameters or "{}"),
            "limits": json.loads(template.limits or "{}"),
            "pricing": json.loads(template.pricing or "{}"),
            "approvals": json.loads(template.approvals or "{}"),
        },
    )


@bp.route("/templates/<int:template_id>", methods=["POST"])
@right_required("templates.manage")
def update_template(template_id):
    """Save the editor's fields; anything invalid is refused by the same checks as the
    API's, and the form comes back with what was typed and the reason."""
    template = _template_or_404(template_id)
    before = {key: getattr(template, key) for key in template_form.HISTORY_KEYS}
    try:
        values = template_form.read(request.form, template)
        templates.update(
            template, **values, may_grant_host=authz.can(current_user.row, "templates.approve_host")
        )
    except templates.GrantRefused as exc:
        auditing.record("template.update", f"template:{template.name}", "denied", error=str(exc))
        return _editor(template, _typed(template), exc, 403)
    except (ValueError, templates.TemplateError) as exc:
        return _editor(template, _typed(template), exc, 422)
    auditing.record(
        "template.update",
        f"template:{template.name}",
        parameters=template.parameters,
        pricing=template.pricing,
        limits=template.limits,
        approvals=template.approvals,
        enabled=template.enabled,
        changed=[k for k in template_form.HISTORY_KEYS if getattr(template, k) != before[k]],
    )
    flash(f"Template {template.name} saved.", "success")
    return redirect(url_for("admin.edit_template", template_id=template.id))


def _typed(template: Template) -> dict:
    """The form as it was sent, to show again with the refusal (nothing is lost)."""
    form = request.form
    parameters = json.loads(template.parameters or "{}")
    for name, spec in parameters.items():
        for bound in template_form.BOUNDS:
            if f"param.{name}.{bound}" in form:
                spec[bound] = form[f"param.{name}.{bound}"]
    limits = {
        key: form.get(f"limit.{key}", "")
        for key in [*template_form.NUMBER_LIMITS, *template_form.DURATION_LIMITS]
    }
    limits.update({key: form.get(f"limit.{key}") == "on" for key in template_form.FLAG_LIMITS})
    return {
        "enabled": form.get("enabled") == "on",
        "parameters": parameters,
        "limits": limits,
        "pricing": {key: form.get(f"price.{key}", "") for key in template_form.PRICE_LABELS},
        "approvals": form.get("approvals", ""),
    }


@bp.route("/users", methods=["POST"])
@admin_required
def create_user():
    try:
        user = accounts.create_user(
            request.form.get("username", ""),
            request.form.get("password", ""),
            request.form.get("role", "member"),
            email=request.form.get("email") or None,
        )
    except accounts.AccountError as refusal:
        flash(f"User not created: {refusal}.", "error")
    else:
        auditing.record("user.create", f"user:{user.username}", role=user.role)
        flash(f"User {user.username} created.", "success")
    return redirect(url_for("admin.people"))


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
@admin_required
def disable_user(user_id):
    return _set_disabled(user_id, True)


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
@admin_required
def enable_user(user_id):
    return _set_disabled(user_id, False)


def _set_disabled(user_id: int, disabled: bool):
    user = _user_or_404(user_id)
    try:
        accounts.set_disabled(user, disabled, acting=current_user.row)
    except accounts.AccountError as refusal:
        flash(str(refusal), "error")
    else:
        auditing.record("user.disable" if disabled else "user.enable", f"user:{user.username}")
        flash(f"{user.username} is {'disabled' if disabled else 'enabled again'}.", "success")
    return redirect(url_for("admin.people"))


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@admin_required
def reset_password(user_id):
    user = _user_or_404(user_id)
    try:
        accounts.set_password(user, request.form.get("password", ""))
    except accounts.AccountError as refusal:
        flash(f"Password not changed: {refusal}.", "error")
    else:
        auditing.record("user.password_reset", f"user:{user.username}")
        flash(f"The password of {user.username} was reset.", "success")
    return redirect(url_for("admin.people"))


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@admin_required
def set_role(user_id):
    user = _user_or_404(user_id)
    before = user.role
    try:
        accounts.set_role(user, request.form.get("role", ""), acting=current_user.row)
    except accounts.AccountError as refusal:
        flash(f"Role not changed: {refusal}", "error")
    else:
        auditing.record("user.role", f"user:{user.username}", before=before, after=user.role)
        flash(f"{user.username} is now {user.role}.", "success")
    return redirect(url_for("admin.people"))


@bp.route("/groups", methods=["POST"])
@admin_required
def create_group():
    try:
        group = groups.create(request.form.get("name", ""), request.form.get("description", ""))
    except groups.GroupError as refusal:
        flash(f"Group not created: {refusal}.", "error")
    else:
        auditing.record("group.create", f"group:{group.name}")
        flash(f"Group {group.name} created.", "success")
    return redirect(url_for("admin.groups_and_quotas"))


@bp.route("/groups/<int:group_id>/members", methods=["POST"])
@admin_required
def group_member(group_id):
    group = Group.get_or_none(Group.id == group_id)
    if group is None:
        abort(404, "There is no such group.")
    try:
        user = accounts.find_user(request.form.get("username", ""))
    except accounts.AccountError as refusal:
        flash(f"Group not changed: {refusal}.", "error")
        return redirect(url_for("admin.groups_and_quotas"))
    if request.form.get("remove"):
        if groups.remove_member(group, user):
            auditing.record("group.member.remove", f"group:{group.name}", user=user.username)
        flash(f"{user.username} left {group.name}.", "success")
    else:
        if groups.add_member(group, user):
            auditing.record("group.member.add", f"group:{group.name}", user=user.username)
        flash(f"{user.username} is in {group.name}.", "success")
    return redirect(url_for("admin.groups_and_quotas"))


@bp.route("/audit")
@right_required("audit.read")
def audit_log():
    """The audit log, filtered by user, workspace, action and time; with the chain check."""
    args = request.args
    try:
        since = parse_time(args.get("since"))
        until = parse_time(args.get("until"))
    except ValueError as exc:
        flash(str(exc), "error")
        since = until = None
    query = audit.search(
        actor=args.get("user") or None,
        workspace=args.get("workspace") or None,
        action=args.get("action") or None,
        since=since,
        until=until,
    )
    rows, total, paging = _paged(
        query, "admin.audit_log", keep=("user", "workspace", "action", "since", "until")
    )
    return render_template(
        "admin/audit.html",
        rows=[audit.to_dict(r) for r in rows],
        total=total,
        paging=paging,
        verdict=audit.verify() if args.get("verify") else None,
        filters=args,
    )


@bp.route("/quotas", methods=["POST"])
@admin_required
def set_quota():
    form = request.form
    kind, name = form.get("kind", "user"), form.get("name", "").strip()
    try:
        subject = accounts.find_user(name) if kind == "user" else groups.find(name)
        values = {}
        for field in quotas.FIELDS:
            text = form.get(field, "").strip()
            values[field] = None if not text else float(text) if "." in text else int(text)
        quotas.set_quota(subject, values)
    except (accounts.AccountError, groups.GroupError, quotas.QuotaError) as refusal:
        flash(f"Quota not set: {refusal}.", "error")
    except ValueError:
        flash("Quota not set: the limits must be numbers.", "error")
    else:
        auditing.record("quota.set", f"{kind}:{name}", **values)
        flash(f"Quota of {kind} {name} set.", "success")
    return redirect(url_for("admin.groups_and_quotas"))


def _period(args):
    now = utcnow()
    since = parse_time(args.get("since")) or costs.month_start(now)
    until = parse_time(args.get("until")) or now
    if until <= since:
        raise ValueError("the period must end after it starts")
    return since, until


@bp.route("/costs")
@right_required("workspaces.read_all")
def cost_report():
    """Cost per workspace, person and group for a period, with the groups' budgets."""
    try:
        since, until = _period(request.args)
    except ValueError as exc:
        flash(str(exc), "error")
        since, until = costs.month_start(utcnow()), utcnow()
    lines = costs.workspace_costs(since, until)
    budgets = Budget.select(Budget, Group).join(Group).order_by(Group.name)
    return render_template(
        "admin/costs.html",
        since=since,
        until=until,
        lines=lines,
        users=sorted(costs.by_user(lines).items()),
        groups=sorted(costs.by_group(lines).items()),
        total=sum(line.cost for line in lines),
        budgets=[costs.budget_dict(b) for b in budgets],
        all_groups=list(Group.select().order_by(Group.name)),
        currency=current_app.config["BERTH_SETTINGS"].currency,
        priced=_priced_templates() > 0,
    )


@bp.route("/costs.csv")
@right_required("workspaces.read_all")
def cost_csv():
    try:
        since, until = _period(request.args)
    except ValueError as exc:
        abort(400, str(exc))
    rows = [line.to_dict() for line in costs.workspace_costs(since, until)]
    out = io.StringIO()
    header = ["workspace_id", "workspace", "owner", "template", "hourly_rate", "hours", "cost"]
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    name = f"berth-costs-{since:%Y%m%d}-{until:%Y%m%d}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.route("/budgets", methods=["POST"])
@admin_required
def set_budget():
    group = Group.get_or_none(Group.name == request.form.get("group", ""))
    if group is None:
        abort(404, "There is no such group.")
    text = request.form.get("monthly", "").strip()
    try:
        monthly = float(text) if text else None
        costs.set_budget(group, monthly, request.form.get("hard_stop") == "on")
    except (ValueError, costs.CostError) as exc:
        flash(f"Budget not set: {exc}.", "error")
    else:
        auditing.record(
            "budget.set",
            f"group:{group.name}",
            monthly=monthly,
            hard_stop=request.form.get("hard_stop") == "on",
        )
        flash(f"Budget of {group.name} set.", "success")
    return redirect(url_for("admin.cost_report"))
