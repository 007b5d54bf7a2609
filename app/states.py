"""The workspace state machine: its statuses, the kinds of jobs that move it, the moves
allowed, and ``move``, the one function that changes a workspace's status and records
the change. Every move has a job behind it (a Transition row): a request's, or one
``move`` writes for reconcile's repairs, so a workspace's history is complete."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from app import audit
from app.models import StateChange, Transition, Workspace, utcnow


class Status(StrEnum):
    PENDING = "pending"
    BUILDING = "building"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"
    POOLED = "pooled"  # a warm-pool member waiting to be claimed (app.workspaces.pool)


class Kind(StrEnum):
    """What a job does."""

    CREATE = "create"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    REBUILD = "rebuild"
    BACKUP = "backup"
    DELETE = "delete"
    RECONCILE = "reconcile"  # written by ``move`` for reconcile's repairs, never requested


class Cause(StrEnum):
    """Why a job exists."""

    USER = "user"
    API = "api"
    SSH = "ssh"
    IDE = "ide"
    SCHEDULE = "schedule"
    RECONCILE = "reconcile"


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


S = Status
LIVE = tuple(s for s in Status if s is not S.DELETED)
# Holding (or about to hold) a container: quotas count these.
ACTIVE = (S.PENDING, S.BUILDING, S.STARTING, S.RUNNING)
# In the middle of a job: with no job behind it, a crash ended that job (reconcile).
TRANSITIONAL = (S.PENDING, S.BUILDING, S.STARTING, S.STOPPING, S.DELETING)
ACTIVE_JOB = (JobStatus.PENDING, JobStatus.RUNNING)

# Which statuses a request of each kind is accepted from (app.workspaces.service).
REQUESTABLE_FROM: dict[Kind, tuple[Status, ...]] = {
    Kind.START: (S.STOPPED, S.FAILED),
    Kind.STOP: (S.RUNNING, S.STARTING, S.FAILED),
    Kind.RESTART: (S.RUNNING, S.FAILED),
    Kind.REBUILD: (S.RUNNING, S.STOPPED, S.FAILED),
    Kind.BACKUP: (S.RUNNING, S.STOPPED, S.FAILED),
    Kind.DELETE: tuple(s for s in LIVE),
}

# The moves a status may make. A job begins (or, run again after a crash, resumes) its
# work from any live status: every step is idempotent, so a job re-run from wherever the
# crash left the workspace moves it on from there. It ends in a settled status. Every
# live status may also fail or start being deleted; staying where it is (a message on
# the record, nothing else) is always allowed.
WORKING = (S.PENDING, S.BUILDING, S.STARTING, S.STOPPING)
SETTLED_BY_A_JOB = (S.RUNNING, S.STOPPED, S.POOLED)
MOVES: dict[Status, frozenset[Status]] = {
    status: frozenset(
        {S.BUILDING, S.STARTING, S.STOPPING, S.FAILED, S.DELETING}
        | (set(SETTLED_BY_A_JOB) if status in WORKING else set())
        | {
            S.RUNNING: {S.STOPPED},  # its container stopped by itself (reconcile)
            S.POOLED: {S.RUNNING},  # claimed
            S.DELETING: {S.DELETED, S.RUNNING, S.STOPPED},  # done; or reconcile after a crash
        }.get(status, set())
    )
    - ({S.BUILDING, S.STARTING, S.STOPPING} if status is S.DELETING else set())
    if status in LIVE
    else frozenset()
    for status in Status
}


class IllegalMove(Exception):
    """A move the state machine does not allow: a bug, never a user's mistake."""


def allowed(current: str, target: str) -> bool:
    return target == current or Status(target) in MOVES[Status(current)]


def move(
    ws: Workspace,
    target: Status,
    job: Transition | None,
    *,
    message: str | None = None,
    error: str | None = None,
    expect: Status | None = None,
    at: datetime | None = None,
    **fields,
) -> bool:
    """Move ``ws`` to ``target`` as part of ``job`` and record it (a StateChange; with no
    job, a reconcile job written here, and an audit record). ``fields`` are set on the row
    in the same update. With ``expect``, the move happens only if the status is still that
    (False when another process moved it first). Raises IllegalMove."""
    now = at or utcnow()
    previous = expect or Status(Workspace.get_by_id(ws.id).status)
    if not allowed(previous, target):
        raise IllegalMove(f"workspace {ws.id}: {previous} cannot become {target}")
    values = {"status": str(target), "error": error, "updated_at": now, **fields}
    if target != previous:
        values["status_since"] = now
    if target == S.DELETED:
        values["live_name"] = None
    query = Workspace.update(**values).where(Workspace.id == ws.id)
    if expect is not None:
        query = query.where(Workspace.status == str(expect))
    if not query.execute():
        return False
    for name, value in values.items():
        setattr(ws, name, value)
    if job is None:
        job = Transition.create(
            workspace=ws,
            kind=Kind.RECONCILE,
            status=JobStatus.SUCCEEDED,
            cause=Cause.RECONCILE,
            actor="reconcile",
            reason=message or error,
            started_at=now,
            finished_at=now,
        )
        if target != previous:
            audit.record(
                "workspace.reconcile",
                actor="reconcile",
                target=f"workspace:{ws.owner.username}.{ws.name}",
                cause=Cause.RECONCILE,
                transition=job.id,
                workspace_id=ws.id,
                from_status=str(previous),
                to_status=str(target),
                message=message or error,
            )
    StateChange.create(
        workspace=ws,
        transition=job,
        from_status=str(previous),
        to_status=str(target),
        cause=job.cause,
        actor=job.actor,
        message=message,
        at=now,
    )
    return True
