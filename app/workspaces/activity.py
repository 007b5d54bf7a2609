"""Who is using a workspace, through what, and when: the facts the idle auto-stop acts
on and the workspace page explains. One row per (workspace, source)."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import peewee

from app.models import Activity, utcnow
from app.workspaces.automatic import Use

# A busy session would otherwise write on every keystroke; the idle timeout is counted
# in minutes, so one write per half minute per source loses nothing that matters.
THROTTLE_SECONDS = 30.0

_last_write: dict[tuple[int, str], float] = {}
_lock = threading.Lock()


def would_record(workspace_id: int, source: str, every: float = THROTTLE_SECONDS) -> bool:
    """Whether ``record`` would write now: a caller on a hot path (an SSH session's
    every chunk) asks this before it opens a database connection at all."""
    with _lock:
        return time.monotonic() - _last_write.get((workspace_id, source), -every) >= every


def _due(workspace_id: int, source: str, force: bool, every: float) -> bool:
    key = (workspace_id, source)
    now = time.monotonic()
    with _lock:
        if not force and now - _last_write.get(key, -every) < every:
            return False
        _last_write[key] = now
        return True


def record(
    workspace_id: int,
    source: str,
    detail: str | None = None,
    *,
    sessions: int = 0,
    force: bool = False,
    at: datetime | None = None,
    every: float = THROTTLE_SECONDS,
) -> bool:
    """Note use of a workspace through ``source`` (now, or ``at`` for use observed
    later, such as a heartbeat file); ``sessions`` is +1 when a session opens and -1 when
    it closes (always written); otherwise at most one write per ``every`` seconds.
    Returns whether a row was written."""
    if not _due(workspace_id, source, force or bool(sessions), every):
        return False
    now = min(at, utcnow()) if at else utcnow()
    (
        Activity.insert(
            workspace=workspace_id,
            source=source,
            last_at=now,
            detail=detail,
            open_sessions=max(sessions, 0),
        )
        .on_conflict(
            conflict_target=[Activity.workspace, Activity.source],
            update={
                Activity.last_at: now,
                Activity.detail: detail,
                # Never below zero (MAX/GREATEST differ between the two engines).
                Activity.open_sessions: peewee.Case(
                    None,
                    [(Activity.open_sessions + sessions < 0, 0)],
                    Activity.open_sessions + sessions,
                ),
            },
        )
        .execute()
    )
    return True


def reset_sessions(source: str) -> None:
    """Forget sessions a crashed process left counted (called when it starts again)."""
    Activity.update(open_sessions=0).where(Activity.source == source).execute()


def uses(workspace_id: int) -> list[Use]:
    return uses_of([workspace_id]).get(workspace_id, [])


def uses_of(ids: list[int]) -> dict[int, list[Use]]:
    """The uses of many workspaces, in one query."""
    found: dict[int, list[Use]] = {}
    for r in Activity.select().where(Activity.workspace.in_(ids)):
        found.setdefault(r.workspace_id, []).append(
            Use(r.source, r.last_at, r.detail, r.open_sessions)
        )
    return found


def summary(workspace_id: int, rows: list[Use] | None = None) -> dict | None:
    """The latest use and the use per source; ``rows`` when the caller has them."""
    rows = uses(workspace_id) if rows is None else rows
    if not rows:
        return None
    latest = max(rows, key=lambda r: r.at)
    return {
        "last_at": latest.at,
        "source": latest.source,
        "detail": latest.detail,
        "open_sessions": {r.source: r.open_sessions for r in rows if r.open_sessions},
        "sources": {r.source: {"last_at": r.at, "detail": r.detail} for r in rows},
    }
