"""The worker's scheduled jobs, each run recorded (start, end, outcome, detail) in
``scheduled_jobs`` so the admin page can show what ran and what failed.

Only the worker runs them, and only one worker runs per instance (its instance lock), so
every job runs once however many processes are started."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from app.backups import BackupError
from app.db import database
from app.models import ScheduledJob, utcnow

log = logging.getLogger("berth.scheduler")


def _naive(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC).replace(tzinfo=None) if value else None


def run_recorded(
    name: str,
    func: Callable[[], str | None],
    next_run_at=None,
    explain: Callable[[BaseException], str | None] = lambda exc: None,
) -> str | None:
    """Run ``func`` as job ``name``: record its outcome; a failure is logged, not raised.
    ``explain`` gives one line for a failure whose cause is known (the engine is down)."""
    ScheduledJob.update(last_started_at=utcnow(), last_outcome="running").where(
        ScheduledJob.name == name
    ).execute()
    try:
        detail, outcome = func(), "succeeded"
    except Exception as exc:
        known = explain(exc) or (str(exc) if isinstance(exc, BackupError) else None)
        # An expected failure names its cause; only a surprise needs a traceback.
        log.error("scheduled job %s failed: %s", name, known or exc, exc_info=known is None)
        detail, outcome = known or f"{type(exc).__name__}: {exc}", "failed"
    ScheduledJob.update(
        last_finished_at=utcnow(),
        last_outcome=outcome,
        last_detail=(detail or "")[:2000],
        runs=ScheduledJob.runs + 1,
        failures=ScheduledJob.failures + (outcome == "failed"),
        **({"next_run_at": next_run_at} if next_run_at else {}),
    ).where(ScheduledJob.name == name).execute()
    return detail if outcome == "succeeded" else None


def register(name: str, schedule: str) -> None:
    """Make sure ``name`` has a row (for manual runs before the worker ever ran)."""
    updated = ScheduledJob.update(schedule=schedule).where(ScheduledJob.name == name).execute()
    if not updated:
        ScheduledJob.insert(name=name, schedule=schedule).on_conflict_ignore().execute()


class Book:
    """The worker's APScheduler with every job recorded."""

    def __init__(self, explain: Callable[[BaseException], str | None] = lambda exc: None):
        self.scheduler = BackgroundScheduler(daemon=True, timezone=UTC)
        self.explain = explain

    def add(self, name: str, func: Callable[[], str | None], trigger, schedule: str) -> None:
        with database.connection_context():
            register(name, schedule)

        def job():
            upcoming = self.scheduler.get_job(name)
            with database.connection_context():
                run_recorded(
                    name,
                    func,
                    _naive(upcoming.next_run_time if upcoming else None),
                    self.explain,
                )

        self.scheduler.add_job(job, trigger, id=name, max_instances=1, coalesce=True)

    def start(self) -> None:
        self.scheduler.start()
        with database.connection_context():
            for job in self.scheduler.get_jobs():
                ScheduledJob.update(next_run_at=_naive(job.next_run_time)).where(
                    ScheduledJob.name == job.id
                ).execute()

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
