"""What the scheduler runs: the lifecycle sweep (idle stop, max runtime, TTL, dormancy,
failed cleanup) and the nightly database backup with retention.

The sweep only records transitions (cause ``schedule``, the rule as actor, the reason
in words); the worker carries them out like any other, so automatic actions show in
the workspace history exactly like manual ones."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from app import audit, costs
from app.backups import database as db_backups
from app.config import Settings
from app.messages import first_line
from app.models import Budget, Group, GroupMember, Transition, Workspace, utcnow
from app.runtime import ProvisionError, Runtime
from app.states import JobStatus as J
from app.states import Status as S
from app.workspaces import activity, automatic, ide, notices, service

log = logging.getLogger("berth.scheduler")
# An automatic action that failed (a backup before deletion, say) is retried at most
# this often, not on every sweep.
RETRY_AFTER = timedelta(hours=1)


def read_keepalive(runtime: Runtime, ws: Workspace, now: datetime) -> bool:
    """Turn the mark ``berth-keepalive`` leaves at /run/berth/keepalive into activity.
    It is read inside the workspace through the engine (a workspace cannot point Berth at
    a host file), and a time in the future counts as now."""
    if not ws.container_id:
        return False
    try:
        mark = runtime.read_keepalive(ws.container_id, ws.remote_user or "root")
    except ProvisionError:  # gone meanwhile: no sign of use
        return False
    if mark is None:
        return False
    touched = min(datetime.fromtimestamp(mark[0], UTC).replace(tzinfo=None), now)
    known = [u.at for u in activity.uses(ws.id) if u.source == "keepalive"]
    if known and touched <= known[0]:
        return False
    return activity.record(
        ws.id, "keepalive", mark[1][:200] or "berth-keepalive", force=True, at=touched
    )


def _failed_recently(ws: Workspace, rule: str, now: datetime) -> bool:
    return (
        Transition.select()
        .where(
            (Transition.workspace == ws)
            & (Transition.cause == "schedule")
            & (Transition.actor == rule)
            & (Transition.status == J.FAILED)
            & (Transition.finished_at > now - RETRY_AFTER)
        )
        .exists()
    )


def read_ide_heartbeat(ws: Workspace) -> bool:
    """An IDE tab that is open counts as use: code-server says "alive" while it has a
    connection (its /healthz does not count as one)."""
    health = ide.healthz(ws.address) if ws.address else None
    if not health or health.get("status") != "alive":
        return False
    return activity.record(ws.id, "ide", "IDE open in a browser", force=True)


def sweep(settings: Settings, runtime: Runtime | None = None, now: datetime | None = None) -> str:
    """Request every automatic stop or deletion that is due; return what was requested.
    Each workspace is handled on its own: one that fails is logged and the rest go on."""
    now = now or utcnow()
    requested, failed = [], []
    candidates = Workspace.select().where(Workspace.status.in_((S.RUNNING, S.STOPPED, S.FAILED)))
    for ws in list(candidates):
        try:
            line = _sweep_one(settings, runtime, ws, now)
        except Exception as exc:  # noqa: BLE001  (one workspace must not stop the sweep)
            log.exception("lifecycle: %s/%s could not be checked", ws.owner.username, ws.name)
            failed.append(f"{ws.owner.username}/{ws.name}: {first_line(exc)}")
            continue
        if line:
            requested.append(line)
    if failed:
        raise SweepIncomplete("; ".join(requested + [f"not checked: {f}" for f in failed]))
    return "; ".join(requested) or "nothing due"


class SweepIncomplete(Exception):
    """Some workspaces could not be checked (the others were); the message lists both."""


def _sweep_one(
    settings: Settings, runtime: Runtime | None, ws: Workspace, now: datetime
) -> str | None:
    look = service.outlook(ws, now)
    if look.warnings and look.due is None:
        notices.tell_owner(settings, ws, look.warnings, now)
    # Signs of use Berth has to go and look for are read only when they could change
    # the answer: a mark from berth-keepalive, an open IDE tab.
    idle = look.due is not None and look.due[1] == "idle" and runtime is not None
    if idle and (read_keepalive(runtime, ws, now) or read_ide_heartbeat(ws)):
        look = service.outlook(Workspace.get_by_id(ws.id), now)
    if look.due is None or service.active_job(ws) is not None:
        return None
    kind, rule, reason = look.due
    if _failed_recently(ws, rule, now):
        return None
    rules = automatic.policy_for(ws.template, json.loads(ws.parameters))
    options = {}
    if kind == "delete" and rule != "ttl" and rules.dormant_backup:
        options["backup_first"] = True
    try:
        service.request(
            ws,
            kind,
            cause="schedule",
            actor=rule,
            reason=reason,
            options=options,
            data_dir=settings.data_dir,
        )
    except service.WorkspaceError as exc:
        log.info("%s: %s not requested: %s", ws.name, kind, exc.message)
        return None
    line = f"{ws.owner.username}/{ws.name}: {kind} ({rule}): {reason}"
    log.info("lifecycle: %s", line)
    return line


def enforce_budgets(settings: Settings, now: datetime | None = None) -> str:
    """Alert once a month at 80 % of a group's budget; at 100 % of a hard-stop budget,
    stop the running workspaces of the group's members (new starts are refused by
    app.costs.check_budget). Everything it does is audited."""
    now = now or utcnow()
    month = now.strftime("%Y-%m")
    done = []
    # Read before writing (app.workspaces.pool.refill).
    for budget in list(Budget.select(Budget, Group).join(Group)):
        spent = costs.group_spend(budget.group, now)
        used = spent / budget.monthly if budget.monthly else float("inf")
        about = {"spent": round(spent, 4), "monthly": budget.monthly, "month": month}
        if used >= costs.ALERT_AT and budget.alerted_month != month:
            budget.alerted_month = month
            budget.save(only=[Budget.alerted_month])
            audit.record(
                "budget.alert", actor="budget", target=f"group:{budget.group.name}", **about
            )
            done.append(f"{budget.group.name}: {used:.0%} of its budget used")
        if not (budget.hard_stop and used >= 1):
            continue
        if budget.stopped_month != month:
            budget.stopped_month = month
            budget.save(only=[Budget.stopped_month])
            audit.record(
                "budget.stop", actor="budget", target=f"group:{budget.group.name}", **about
            )
        members = GroupMember.select(GroupMember.user).where(GroupMember.group == budget.group)
        running = Workspace.select().where(
            Workspace.owner.in_(members) & Workspace.status.in_((S.RUNNING, S.STARTING))
        )
        for ws in list(running):
            if service.active_job(ws) is not None:
                continue
            try:
                service.request(
                    ws,
                    "stop",
                    cause="schedule",
                    actor="budget",
                    reason=f"the monthly budget of group {budget.group.name} is used up "
                    f"({spent:.2f} of {budget.monthly:.2f})",
                    data_dir=settings.data_dir,
                )
            except service.WorkspaceError as exc:
                log.info("%s: budget stop not requested: %s", ws.name, exc.message)
                continue
            done.append(f"{ws.owner.username}/{ws.name}: stopped (budget of {budget.group.name})")
    return "; ".join(done) or "within budgets"


def nightly_backup(settings: Settings) -> str:
    """Back up the database, then apply retention (only after a good backup)."""
    taken = db_backups.backup_now(settings)
    removed = db_backups.retention(settings)
    return f"{taken.path.name} ({taken.size} bytes)" + (
        f"; retention removed {', '.join(p.name for p in removed)}" if removed else ""
    )
