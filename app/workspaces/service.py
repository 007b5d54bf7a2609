"""Asking for workspace changes: validation and records only. The worker does the work.

Every function here either records a complete request (a workspace row, a transition,
a state change, in one database transaction) or raises ``WorkspaceError`` and records
nothing.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import peewee

from app import audit, authz, costs, egress, states
from app.backups import Backup, BackupError
from app.backups import workspaces as volume_backups
from app.db import database, write_transaction
from app.durations import format_duration, parse_duration
from app.models import (
    AuditEvent,
    StateChange,
    Template,
    Transition,
    User,
    Workspace,
    row_id,
    stamp,
    utcnow,
)
from app.states import JobStatus as J
from app.states import Kind
from app.states import Status as S
from app.workspaces import (
    activity,
    apps,
    automatic,
    git,
    ide_sessions,
    pool,
    quotas,
    strangers,
    templates,
    wakeup,
)

NAME_RULE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# Kept under their old names: the API, the web pages and the tests read them here.
ACTIVE_JOB = states.ACTIVE_JOB
ALLOWED_FROM = states.REQUESTABLE_FROM


class WorkspaceError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def validate_name(name) -> str:
    if not isinstance(name, str) or not 2 <= len(name) <= 32 or not NAME_RULE.match(name):
        raise WorkspaceError(
            422,
            "invalid_name",
            f"workspace name {name!r} is not allowed: use 2 to 32 lowercase letters, digits and "
            "single hyphens, starting with a letter",
        )
    return name


CONFIG_NAMES = ("devcontainer.json", ".devcontainer.json")


def validate_config_path(repo: dict) -> str | None:
    """The repository's config a creator chose (``repo.config``), as a clean relative
    path that names a devcontainer.json; None when none was chosen."""
    config = repo.get("config")
    if config is None:
        return None
    problem = None
    if not isinstance(config, str) or not config.strip():
        problem = "must be a path in the repository, like .devcontainer/api/devcontainer.json"
    elif len(config) > 255 or any(ch in config for ch in "\\\0\n\r"):
        problem = "is not a plain path"
    elif config.startswith("/") or ".." in config.split("/"):
        problem = "must be relative to the repository and stay inside it"
    elif config.rsplit("/", 1)[-1] not in CONFIG_NAMES:
        problem = "must name a devcontainer.json or .devcontainer.json"
    if problem:
        raise WorkspaceError(422, "invalid_config", f"repo config {config!r} {problem}")
    return "/".join(part for part in config.split("/") if part not in ("", "."))


def validate_repo(repo, local_roots: list[Path], allowed=()) -> tuple[str, str | None]:
    if not isinstance(repo, dict) or not isinstance(repo.get("url"), str) or not repo["url"]:
        raise WorkspaceError(422, "invalid_repo", "repo must be an object with a 'url'")
    url, ref = repo["url"].strip(), repo.get("ref")
    if ref is not None and (not isinstance(ref, str) or ref.startswith("-")):
        raise WorkspaceError(
            422, "invalid_repo", f"repo ref {ref!r} is not a branch, tag or commit"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (urlsplit checks the port only when asked)
        found = None if url.startswith("/") else git.remote(url)
    except ValueError as exc:
        raise WorkspaceError(422, "invalid_repo", f"repository URL {url!r}: {exc}") from None
    except git.CloneError as exc:
        raise WorkspaceError(422, "invalid_repo", str(exc)) from None
    scheme = parts.scheme
    if found is not None:
        try:
            git.check_destination(url, allowed)
        except git.CloneError as exc:
            # A name that does not resolve now may later; the clone checks it again.
            if not exc.unresolved:
                raise WorkspaceError(422, "invalid_repo", str(exc)) from None
        return url, ref
    if scheme in ("file", "") and (scheme == "file" or url.startswith("/")):
        path = Path(urlsplit(url).path if scheme == "file" else url).resolve()
        if not any(path.is_relative_to(root) for root in local_roots):
            raise WorkspaceError(
                422,
                "invalid_repo",
                f"local repository {path} is outside the folders this server allows "
                "(BERTH_LOCAL_REPO_ROOTS)",
            )
        return url, ref
    raise WorkspaceError(
        422,
        "invalid_repo",
        f"repository URL {url!r} must be https://, ssh:// or user@host:path (or a local "
        "path on the server)",
    )


def _check_sign_in(owner: User, url: str, data_dir: Path, allowed) -> None:
    """With a credential kept for the repository's host, ask the host now: a wrong,
    expired or revoked one is a clear refusal before anything is made. (Without one, a
    public repository is cloned by the worker as before.)"""
    if not git.has_credential(owner.id, url):
        return
    try:
        git.ls_remote(url, allowed, auth=git.auth_for(owner.id, url, data_dir))
    except git.SignInRefused as exc:
        raise WorkspaceError(422, "repository_refused", str(exc)) from None
    except git.CloneError:
        pass  # unreachable now: the worker tries again and says so


def _ttl(raw, template: Template | None) -> timedelta | None:
    if raw is None:
        return None
    try:
        ttl = parse_duration(str(raw))
    except ValueError as exc:
        raise WorkspaceError(422, "invalid_ttl", f"ttl: {exc}") from None
    _within_max_ttl(ttl, template, f"ttl: {raw}")
    return ttl


def _within_max_ttl(lifetime: timedelta, template: Template | None, what: str) -> None:
    max_hours = json.loads(template.limits).get("max_ttl_hours") if template else None
    if max_hours and lifetime > timedelta(hours=max_hours):
        raise WorkspaceError(
            422, "invalid_ttl", f"{what} is longer than this template allows ({max_hours}h)"
        )


def _record(
    ws: Workspace,
    to_status: str,
    cause: str,
    actor: str | None,
    transition: Transition | None = None,
    message: str | None = None,
) -> None:
    StateChange.create(
        workspace=ws,
        transition=transition,
        from_status=None,
        to_status=to_status,
        cause=cause,
        actor=actor,
        message=message,
    )


def create(
    owner: User,
    name,
    *,
    template_name=None,
    repo=None,
    parameters=None,
    ttl=None,
    cause: str = "user",
    actor: str | None = None,
    data_dir: Path,
    local_roots: list[Path] = (),
    private_networks=(),
    restore: Backup | None = None,
    source_ip: str | None = None,
    egress_allow: list[str] | None = None,
    allow_pool: bool = False,
) -> Workspace:
    """Record a new workspace; with ``restore`` (a workspace backup the caller may use),
    its volumes come from that backup, and its source and parameters too unless given."""
    validate_name(name)
    if restore is not None:
        about = restore.meta
        if template_name is None and repo is None:
            template_name, repo = about.get("template"), about.get("repo")
        if parameters is None:
            parameters = about.get("parameters")
    template = None
    if template_name is not None and not isinstance(template_name, str):
        raise WorkspaceError(422, "unknown_template", "template must be a template's name (text)")
    if template_name is not None:
        template = Template.get_or_none((Template.name == template_name) & Template.enabled)
        if template is None:
            names = [
                t.name for t in Template.select().where(Template.enabled).order_by(Template.name)
            ]
            raise WorkspaceError(
                422,
                "unknown_template",
                f"template {template_name!r} does not exist; choose one of "
                f"{', '.join(names) or 'none (an admin must add one)'}",
            )
    repo_url = repo_ref = repo_config = None
    if repo is not None:
        repo_url, repo_ref = validate_repo(repo, list(local_roots), private_networks)
        repo_config = validate_config_path(repo)
        _check_sign_in(owner, repo_url, data_dir, private_networks)
    if template is None and repo_url is None:
        raise WorkspaceError(422, "missing_source", "give a 'template' or a 'repo' to build from")
    if parameters is not None and not isinstance(parameters, dict):
        raise WorkspaceError(422, "invalid_parameters", "parameters must be an object")
    try:
        resolved = templates.resolve_parameters(template, parameters)
    except templates.ParameterError as exc:
        raise WorkspaceError(422, "invalid_parameter", str(exc)) from None
    lifetime = _ttl(ttl if ttl is not None else resolved.values.get("ttl"), template)
    if egress_allow is not None:
        try:
            egress_allow = egress.validate(egress_allow, egress.template_networks(template))
        except egress.AllowlistError as exc:
            raise WorkspaceError(422, "invalid_egress", f"egress: {exc}") from None
    with write_transaction():
        if (
            Workspace.select()
            .where((Workspace.owner == owner) & (Workspace.live_name == name))
            .exists()
        ):
            raise WorkspaceError(409, "name_taken", f"you already have a workspace named {name!r}")
        _check_quota(owner, None, resolved.values, new=True)
        request_body = {"repo": repo, "restore": restore, "parameters": parameters}
        if allow_pool and pool.compatible(template, request_body):
            claimed = pool.claim(
                template,
                owner,
                name,
                lifetime=lifetime,
                egress_allow=egress_allow,
                actor=actor or owner.username,
                source_ip=source_ip,
            )
            if claimed is not None:
                # Its token is made and handed in by the caller (app.api.workspaces),
                # which reaches the engine; this records only.
                wakeup.notify(data_dir)
                return claimed
        ws = Workspace.create(
            owner=owner,
            name=name,
            live_name=name,
            template=template,
            repo_url=repo_url,
            repo_ref=repo_ref,
            repo_config=repo_config,
            parameters=json.dumps(resolved.values),
            status="pending",
            ttl_expires_at=utcnow() + lifetime if lifetime else None,
            egress_allow=json.dumps(egress_allow) if egress_allow else None,
            credentials_off=strangers.restored(restore),
        )
        job = Transition.create(
            workspace=ws,
            kind="create",
            cause=cause,
            actor=actor,
            options=json.dumps({"restore": restore.id} if restore else {}),
        )
        _record(
            ws,
            "pending",
            cause,
            actor,
            job,
            f"created from the backup {restore.id}" if restore else "created",
        )
        _audit_request(job, ws, owner.username, source_ip)
    wakeup.notify(data_dir)
    return ws


def request(
    ws: Workspace,
    kind: str,
    *,
    cause: str = "user",
    actor: str | None = None,
    options: dict | None = None,
    reason: str | None = None,
    data_dir: Path,
    source_ip: str | None = None,
    allowed_from: tuple[str, ...] | None = None,
) -> Transition:
    """Record that ``ws`` should go through ``kind``; the worker carries it out.
    ``allowed_from`` widens the states it may start from, for the worker's own requests
    (setting up again a running workspace the engine restarted)."""
    with write_transaction():
        ws = Workspace.get_by_id(ws.id)
        current = active_job(ws)
        if kind != Kind.DELETE and current is not None and not _settling(current, ws):
            raise WorkspaceError(
                409,
                "busy",
                f"workspace {ws.name!r} is busy with "
                f"{current.kind} ({current.status}); try again when it is done",
            )
        if ws.status not in ALLOWED_FROM[kind] + (allowed_from or ()):
            raise WorkspaceError(
                409, "invalid_state", f"workspace {ws.name!r} is {ws.status}; it cannot {kind} now"
            )
        if kind in (Kind.START, Kind.RESTART, Kind.REBUILD) and ws.status not in states.ACTIVE:
            _check_quota(ws.owner, ws, json.loads(ws.parameters), new=False)
        if (
            kind == Kind.DELETE
            and ws.transitions.where(
                (Transition.kind == Kind.DELETE) & Transition.status.in_(states.ACTIVE_JOB)
            ).exists()
        ):
            raise WorkspaceError(409, "busy", f"workspace {ws.name!r} is already being deleted")
        job = Transition.create(
            workspace=ws,
            kind=kind,
            cause=cause,
            actor=actor,
            options=json.dumps(options or {}),
            reason=reason,
        )
        _audit_request(job, ws, ws.owner.username, source_ip)
    wakeup.notify(data_dir)
    return job


def _check_quota(owner: User, ws: Workspace | None, values: dict, *, new: bool) -> None:
    """Quotas and budgets, before anything starts."""
    try:
        quotas.check(owner, ws, values, new=new)
    except quotas.QuotaExceeded as exc:
        raise WorkspaceError(403, "quota_exceeded", str(exc)) from None
    try:
        costs.check_budget(owner)
    except costs.CostError as exc:
        raise WorkspaceError(403, "budget_exhausted", str(exc)) from None


def _audit_request(job: Transition, ws: Workspace, owner: str, source_ip: str | None) -> None:
    audit.record(
        f"workspace.{job.kind}.request",
        actor=job.actor,
        source_ip=source_ip,
        target=f"workspace:{owner}.{ws.name}",
        cause=job.cause,
        reason=job.reason,
        transition=job.id,
        workspace_id=ws.id,
    )


OFFERED_ORDER = (Kind.START, Kind.STOP, Kind.RESTART, Kind.REBUILD, Kind.BACKUP, Kind.DELETE)


def active_kinds(ids: list[int]) -> dict[int, list[str]]:
    """The kinds of the jobs each workspace is busy with, in one query."""
    found: dict[int, list[str]] = {}
    query = Transition.select(Transition.workspace, Transition.kind).where(
        Transition.workspace.in_(ids) & Transition.status.in_(states.ACTIVE_JOB)
    )
    for job in query:
        found.setdefault(job.workspace_id, []).append(job.kind)
    return found


def offered(
    ws: Workspace, may: Callable[[str], bool], busy_with: list[str] | None = None
) -> list[str]:
    """The requests ``ws`` would accept now that ``may(kind)`` allows, by the rules of
    ``request`` (pages offer only these). ``busy_with``: its ``active_kinds``, when the
    caller has them."""
    busy = active_kinds([ws.id]).get(ws.id, []) if busy_with is None else busy_with
    found = []
    for kind in OFFERED_ORDER:
        if not may(kind) or ws.status not in ALLOWED_FROM[kind]:
            continue
        if kind == Kind.DELETE:
            if Kind.DELETE not in busy:
                found.append(str(kind))
        elif not busy:
            found.append(str(kind))
    return found


def _settling(job: Transition, ws: Workspace) -> bool:
    """Whether ``job`` is a start or create whose workspace runs already, with nothing
    queued behind it: a request made now waits for it in the queue instead of being
    refused as busy. That is a start or create with nothing to set up, which runs before
    its postStart marker is written (and a new container's environment probed:
    lifecycle), or reconcile's setting up again of a container the engine started by
    itself, running all along. The worker runs the queued job after it, from running or
    (when the job's end failed) failed, both states it may start from."""
    return (
        job.kind in (Kind.START, Kind.CREATE)
        and job.status == J.RUNNING
        and ws.status == S.RUNNING
        and not ws.transitions.where(Transition.status == J.PENDING).exists()
    )


def active_job(ws: Workspace) -> Transition | None:
    """The transition the workspace is busy with, if any."""
    return (
        Transition.select()
        .where((Transition.workspace == ws) & Transition.status.in_(states.ACTIVE_JOB))
        .order_by(Transition.id)
        .first()
    )


def visible_to(user: User, include_deleted: bool = False):
    """The workspaces ``user`` may see: their own, shared with them, all for admins and
    auditors."""
    query = (
        Workspace.select(Workspace, User, Template)
        .join(User)
        .switch(Workspace)
        .join(Template, peewee.JOIN.LEFT_OUTER)
    )
    if not include_deleted:
        query = query.where(Workspace.status != S.DELETED)
    condition = authz.workspace_filter(user)
    return query if condition is None else query.where(condition)


def get_visible(
    user: User, workspace_id, include_deleted: bool = False, needed: str = authz.READ
) -> Workspace:
    """The workspace if ``user`` may see it (else 404, whether it exists or not) and has
    the ``needed`` right on it (else 403 naming what they may do). Deleted ones only
    with ``include_deleted`` (their history stays readable)."""
    ws = None
    if row_id(workspace_id) is not None:
        ws = visible_to(user, include_deleted).where(Workspace.id == row_id(workspace_id)).first()
    if ws is None:
        raise WorkspaceError(404, "not_found", f"there is no workspace {workspace_id}")
    require(user, ws, needed)
    return ws


def require(user: User, ws: Workspace, needed: str) -> None:
    if not authz.allows(user, ws, needed):
        has = authz.level(user, ws) or "no"
        raise WorkspaceError(
            403,
            "forbidden",
            f"you have {has} access to workspace {ws.owner.username}.{ws.name}; "
            f"this needs {needed} access",
        )


def find_for_login(user: User, login: str) -> Workspace | None:
    """The workspace an SSH login name means: ``<workspace>`` is the caller's own,
    ``<owner>.<workspace>`` someone's the caller may use (shared with them, or any for
    admins); None for anything else."""
    owner, _, name = (login or "").rpartition(".")
    ws = (
        visible_to(user)
        .where((User.username == (owner or user.username)) & (Workspace.live_name == name))
        .first()
    )
    return ws if ws is not None and authz.allows(user, ws, authz.USE) else None


def _activity(ws: Workspace, rows: list[automatic.Use]) -> dict | None:
    found = activity.summary(ws.id, rows)
    if found:
        found["last_at"] = stamp(found["last_at"])
        for seen in found["sources"].values():
            seen["last_at"] = stamp(seen["last_at"])
    return found


def backup_for(user: User, backup_id, settings) -> Backup:
    """A workspace backup ``user`` may restore (their own; any for admins), else 404."""
    try:
        found = volume_backups.find(settings, backup_id)
    except BackupError:
        found = None
    if found is None or (not user.is_admin and found.meta.get("owner") != user.username):
        raise WorkspaceError(404, "not_found", f"there is no workspace backup {backup_id!r}")
    return found


def outlook(ws: Workspace, now=None, uses: list[automatic.Use] | None = None) -> automatic.Outlook:
    """What will happen to ``ws`` by itself, and what is due (see app.workspaces.automatic)."""
    rules = automatic.policy_for(ws.template, json.loads(ws.parameters))
    uses = activity.uses(ws.id) if uses is None else uses
    return automatic.outlook(ws, rules, uses, now or utcnow())


def idle_timeout_text(ws: Workspace) -> str:
    timeout = automatic.idle_timeout_of(json.loads(ws.parameters).get("idle_timeout"))
    return format_duration(timeout) if timeout else "never"


def _note(ws: Workspace, actor: str | None, cause: str, message: str) -> None:
    """A history line for a change that is not a transition (TTL, idle timeout)."""
    StateChange.create(
        workspace=ws,
        from_status=ws.status,
        to_status=ws.status,
        cause=cause,
        actor=actor,
        message=message,
    )


def set_ttl(ws: Workspace, body: dict, *, actor: str, cause: str) -> Workspace:
    """Set the deletion deadline from ``{"ttl": "4h"}`` (from now), ``{"expires_at":
    ISO time}``, or remove it with ``{"ttl": null}`` when the template allows."""
    unknown = sorted(set(body) - {"ttl", "expires_at"})
    if unknown or len(body) != 1:
        raise WorkspaceError(
            422, "invalid_ttl", 'send exactly one of "ttl" (like "4h", or null) or "expires_at"'
        )
    now = utcnow()
    if "expires_at" in body:
        try:
            deadline = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise WorkspaceError(
                422, "invalid_ttl", f"expires_at {body['expires_at']!r} is not an ISO 8601 time"
            ) from None
        if deadline.tzinfo is not None:
            deadline = deadline.astimezone(UTC).replace(tzinfo=None)
        if deadline <= now:
            raise WorkspaceError(422, "invalid_ttl", "expires_at must be in the future")
        _within_max_ttl(deadline - now, ws.template, f"expires_at {body['expires_at']}")
    elif body["ttl"] is None:
        if ws.template and ws.template.profile == "agent":
            raise WorkspaceError(422, "invalid_ttl", "agent sandboxes always have a TTL")
        deadline = None
    else:
        deadline = now + _ttl(body["ttl"], ws.template)
    with write_transaction():
        ws.ttl_expires_at = deadline
        ws.save(only=[Workspace.ttl_expires_at])
        _note(
            ws,
            actor,
            cause,
            f"TTL: deleted at {deadline:%Y-%m-%d %H:%M:%S} UTC" if deadline else "TTL removed",
        )
    return ws


def set_idle_timeout(ws: Workspace, value, *, actor: str, cause: str) -> Workspace:
    """Change the idle timeout within the template's range ("0" = never, if allowed)."""
    parameters = json.loads(ws.parameters)
    schema = json.loads(ws.template.parameters) if ws.template else {}
    # A workspace built from its repository alone has no template limits to respect.
    spec = schema.get("idle_timeout", {"type": "duration", "allow_never": ws.template is None})
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        raise WorkspaceError(422, "invalid_parameter", 'idle_timeout must be like "30m", or "0"')
    try:
        parameters["idle_timeout"] = templates.check_parameter("idle_timeout", spec, str(value))
    except templates.ParameterError as exc:
        raise WorkspaceError(422, "invalid_parameter", str(exc)) from None
    with write_transaction():
        ws.parameters = json.dumps(parameters)
        ws.save(only=[Workspace.parameters])
        _note(ws, actor, cause, f"idle timeout set to {idle_timeout_text(ws)}")
    return ws


def ssh_command(ws: Workspace, viewer: User, host: str, port: int) -> str:
    """The command that opens a shell in ``ws`` through the gateway, for ``viewer``."""
    login = ws.name if ws.owner_id == viewer.id else f"{ws.owner.username}.{ws.name}"
    return f"ssh -p {port} {login}@{host}" if port != 22 else f"ssh {login}@{host}"


def to_dicts(rows, viewer: User | None = None, settings=None) -> list[dict]:
    """``to_dict`` of many workspaces in a fixed number of queries, whatever their number."""
    rows = list(rows)
    ids = [ws.id for ws in rows]
    newest = Transition.select(peewee.fn.MAX(Transition.id)).where(
        Transition.workspace.in_(ids) & (Transition.kind != Kind.RECONCILE)
    )
    last = {
        t.workspace_id: t
        for t in Transition.select().where(Transition.id.in_(newest.group_by(Transition.workspace)))
    }
    used = activity.uses_of(ids)
    ports = apps.ports_of(ids)
    return [
        to_dict(ws, viewer, settings, last=last.get(ws.id), used=used.get(ws.id, []),
                port_rows=ports.get(ws.id, []))
        for ws in rows
    ]  # fmt: skip


_ASK = object()  # to_dict reads it itself


def to_dict(
    ws: Workspace,
    viewer: User | None = None,
    settings=None,
    *,
    last=_ASK,
    used: list | None = None,
    port_rows: list | None = None,
) -> dict:
    """The API's view of ``ws``; with a viewer and the instance's settings, the ssh
    command that viewer would type and the browser URLs of its IDE and ports. ``last``,
    ``used`` and ``port_rows``: what ``to_dicts`` read for many at once."""
    if last is _ASK:
        last = ws.transitions.where(Transition.kind != Kind.RECONCILE)
        last = last.order_by(Transition.id.desc()).first()
    if used is None:
        used = activity.uses(ws.id)  # one read for both "activity" and "lifecycle"
    return {
        "id": ws.id,
        "name": ws.name,
        "owner": ws.owner.username,
        "template": ws.template.name if ws.template else None,
        "repo": ws.repo,
        "parameters": json.loads(ws.parameters),
        "status": ws.status,
        "error": ws.error,
        "image": ws.image,
        "created_at": stamp(ws.created_at),
        "updated_at": stamp(ws.updated_at),
        "ttl_expires_at": stamp(ws.ttl_expires_at),
        "ssh": ssh_command(ws, viewer, settings.ssh_host, settings.ssh_port)
        if viewer is not None and settings
        else None,
        "urls": apps.urls(settings, ws, port_rows) if settings else None,
        "ide": ide_sessions.state_of(ws).as_dict(),
        "activity": _activity(ws, used),
        "lifecycle": {
            "idle_timeout": idle_timeout_text(ws),
            **automatic.describe(outlook(ws, uses=used)),
        },
        "last_transition": {
            "id": last.id,
            "kind": last.kind,
            "status": last.status,
            "cause": last.cause,
        }
        if last
        else None,
    }


def choose_config(
    ws: Workspace,
    config,
    *,
    cause: str = "user",
    actor: str,
    data_dir: Path,
    source_ip: str | None = None,
) -> Transition:
    """Build a repository's workspace whose create failed (a repository with several
    configs asks which) with ``config``: the choice is recorded and the create tried
    again, in one transaction (a refused retry changes nothing)."""
    if not ws.repo_url:
        raise WorkspaceError(
            409, "no_repository", f"workspace {ws.name!r} is not built from a repository"
        )
    path = validate_config_path({"config": config})
    if path is None:
        raise WorkspaceError(
            422, "invalid_config", "config is required, like .devcontainer/api/devcontainer.json"
        )
    with write_transaction():
        ws = Workspace.get_by_id(ws.id)
        if ws.status != S.FAILED:
            raise WorkspaceError(
                409,
                "invalid_state",
                f"workspace {ws.name!r} is {ws.status}; its config is chosen when its "
                "create failed",
            )
        choices = json.loads(ws.repo_choices or "[]")
        if choices and path not in choices:
            raise WorkspaceError(
                422,
                "invalid_config",
                f"the repository has no config {path!r}; it has {', '.join(choices)}",
            )
        ws.repo_config, ws.repo_choices = path, None
        ws.save(only=[Workspace.repo_config, Workspace.repo_choices])
        audit.record(
            "workspace.config",
            actor=actor,
            source_ip=source_ip,
            target=f"workspace:{ws.owner.username}.{ws.name}",
            config=path,
            workspace_id=ws.id,
        )
        # A create from a backup asked too: the retry restores it as well.
        created = (
            ws.transitions.where(Transition.kind == Kind.CREATE)
            .order_by(Transition.id.desc())
            .first()
        )
        restore = json.loads(created.options or "{}").get("restore") if created else None
        job = request(
            ws,
            Kind.START,
            cause=cause,
            actor=actor,
            options={"restore": restore} if restore else None,
            data_dir=data_dir,
            source_ip=source_ip,
        )
    wakeup.notify(data_dir)  # again: the one inside came before the commit
    return job


def set_egress(ws: Workspace, allow, *, actor: str, source_ip: str | None = None) -> None:
    """Replace the workspace's own allowlist entries (its template's stay)."""
    try:
        entries = egress.validate(allow, egress.private_networks(ws))
    except egress.AllowlistError as exc:
        raise WorkspaceError(422, "invalid_egress", f"egress: {exc}") from None
    ws.egress_allow = json.dumps(entries) if entries else None
    ws.save(only=[Workspace.egress_allow])
    audit.record(
        "egress.allowlist",
        actor=actor,
        source_ip=source_ip,
        target=f"workspace:{ws.owner.username}.{ws.name}",
        allow=entries,
    )


def egress_view(ws: Workspace, limit: int = 50) -> dict:
    """Whether Berth controls the workspace's egress, its allowlist, and the latest
    connection attempts and DNS lookups (from the audit log)."""
    recent = audit.search(workspace=f"{ws.owner.username}.{ws.name}", action="egress.")
    return {
        "controlled": egress.controlled(ws),
        "allow": egress.entries(ws),
        "recent": [
            {k: v for k, v in audit.to_dict(r).items() if k not in ("prev_hash", "hash")}
            for r in recent.where(AuditEvent.action != "egress.allowlist").limit(limit)
        ],
    }


def wait_until_settled(ws: Workspace, seconds: float, data_dir: Path | None = None) -> Workspace:
    """``ws`` once it is running (ready for exec: its lifecycle commands ran, or it had
    none and a command waits for its environment: once_set_up) or failed, or as it is
    after ``seconds``. With ``data_dir``, woken by the worker instead of looking often."""
    return _poll(
        lambda: Workspace.get_by_id(ws.id),
        lambda found: found.status in (S.RUNNING, S.FAILED, S.DELETED),
        seconds,
        data_dir,
    )


SET_UP_SECONDS = 120.0


def setting_up(ws: Workspace) -> bool:
    """Whether ``ws`` runs but the environment of its container is not recorded yet,
    while the job that records it is under way."""
    if ws.environment_known or ws.status != S.RUNNING:
        return False
    job = active_job(ws)
    return job is not None and job.kind in (Kind.CREATE, Kind.START, Kind.RESTART, Kind.REBUILD)


def once_set_up(
    ws: Workspace, seconds: float = SET_UP_SECONDS, data_dir: Path | None = None
) -> Workspace:
    """``ws`` (read again) once a person's command in it gets the environment the next
    ones will: a new container counts as running before its job has probed the user's
    environment (when nothing else is to be set up: lifecycle), and a command that comes
    in that moment waits for it. Still being set up after ``seconds`` (a probe that
    hangs, a worker that died under it): 409, never a command without that environment."""
    if ws.environment_known:
        return ws
    found = _poll(
        lambda: Workspace.get_by_id(ws.id), lambda f: not setting_up(f), seconds, data_dir
    )
    if setting_up(found):
        raise WorkspaceError(
            409,
            "setting_up",
            f"workspace {ws.name!r} is still being set up (its environment is not known "
            "yet); try again in a moment, or see its page for how far it got",
        )
    return found


def wait_for_job(job: Transition, seconds: float, data_dir: Path | None = None) -> Transition:
    """``job`` once it succeeded or failed, or as it is after ``seconds``. A start counts
    once it has made its workspace run: one with nothing left to set up runs before its
    job has written the postStart marker."""

    def done(found: Transition) -> bool:
        if found.status in (J.SUCCEEDED, J.FAILED):
            return True
        # Before the job's first move the workspace still has its old status.
        return (
            found.kind == Kind.START
            and found.status == J.RUNNING
            and Workspace.get_by_id(found.workspace_id).status == S.RUNNING
        )

    return _poll(lambda: Transition.get_by_id(job.id), done, seconds, data_dir)


QUICK_LOOK = 0.02  # seconds between a waiting request's first looks
WOKEN_LOOK = 0.25  # between looks where the worker wakes the waiting requests


def _poll(fetch, done, seconds: float, data_dir: Path | None = None):
    """``fetch()`` until ``done`` of it, or as it is after ``seconds``. With
    ``data_dir``, looks again when the worker says something moved (wakeup.Changes),
    and otherwise every WOKEN_LOOK for a wake-up that was lost: a burst of waiting
    requests then costs a look per move instead of fifty a second each, CPU the engine
    and the worker need in that moment. Without it (or no listener), looks on a
    timer. The database connection is kept for the first second only (the worker may
    take minutes, and a connection per look would cost more than the look)."""
    began = time.monotonic()
    deadline = began + seconds
    changes = wakeup.changes(data_dir) if data_dir is not None else None
    pauses = itertools.repeat(WOKEN_LOOK) if changes is not None else _pauses()
    for pause in pauses:
        seen = changes.seen() if changes is not None else 0
        found = fetch()
        if done(found) or time.monotonic() >= deadline:
            return found
        if time.monotonic() - began >= 1:
            database.close()
        timeout = min(pause, max(0.0, deadline - time.monotonic()))
        if changes is not None:
            changes.wait(seen, timeout)
        else:
            time.sleep(timeout)
    raise AssertionError("unreachable")


def _pauses():
    """Looks 20 ms apart for the first second (a start or create on a cached image ends
    within it, and the client should learn of it within a look: each is one read by
    primary key), sparser after, so that many waiting requests (a burst of creates) do
    not take the worker's CPU, and sparser still once it is a build."""
    began = time.monotonic()
    while True:
        waited = time.monotonic() - began
        yield QUICK_LOOK if waited < 1 else 0.05 if waited < 3 else 0.1 if waited < 10 else 0.5
