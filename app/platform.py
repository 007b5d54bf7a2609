"""What an admin should know about Berth itself: a worker that is not running (so no job
runs), scheduled jobs whose last run failed (a banner on every page, for admins); and,
for everyone, how far the first run's preparation has got."""

from __future__ import annotations

import logging
import time

import peewee

from app import health
from app.config import Settings
from app.models import ScheduledJob

# What the worker makes on first use, in order: its steps are scheduled jobs by these names.
PREPARATION = (
    ("base-image", "The base image every workspace is built on"),
    ("control-image", "The engine's control image (SSH tunnels, ending commands)"),
    ("templates", "The built-in templates' images"),
    ("tools", "The IDE (code-server) bundle"),
)
PROGRESS_EVERY_SECONDS = 2.0


def problems(settings: Settings) -> list[str]:
    found = []
    worker = health.check_worker(settings)
    if worker:
        found.append(
            f"The worker is not running ({worker}): jobs wait, and nothing stops or deletes "
            "workspaces by itself. It may be waiting for the Docker engine (see its log)."
        )
    for job in ScheduledJob.select().where(ScheduledJob.last_outcome == "failed"):
        detail = (job.last_detail or "").splitlines()[0][:200] if job.last_detail else ""
        found.append(f"The scheduled job {job.name} failed its last run: {detail}")
    return found


def preparation() -> list[dict]:
    """Each preparation step and where it is, while any has never succeeded; [] once all
    have (a step the worker runs again at its next start, a cache hit then, is done)."""
    rows = {
        job.name: job
        for job in ScheduledJob.select().where(
            ScheduledJob.name.in_([name for name, _ in PREPARATION])
        )
    }
    steps = []
    for name, label in PREPARATION:
        job = rows.get(name)
        outcome = job.last_outcome if job else None
        ever = job is not None and job.runs > job.failures
        state = (
            "done"
            if ever or outcome == "succeeded"
            else {"running": "in progress", "failed": "failed"}.get(outcome or "", "waiting")
        )
        detail = ((job.last_detail or "") if job else "").splitlines()
        steps.append(
            {
                "name": name,
                "label": label,
                "state": state,
                "detail": detail[0][:200] if detail else "",
                "tries": job.runs if job else 0,
            }
        )
    return [] if all(s["state"] == "done" for s in steps) else steps


class Progress:
    """A preparation step's log callback: each line goes to the worker's log, and the
    latest, at most every PROGRESS_EVERY_SECONDS, to the step's row for the dashboard."""

    def __init__(self, name: str, logger: logging.Logger):
        self.name = name
        self.log = logger
        self.written = 0.0

    def __call__(self, line: str) -> None:
        self.log.info("%s: %s", self.name, line)
        now = time.monotonic()
        if now - self.written < PROGRESS_EVERY_SECONDS:
            return
        self.written = now
        try:
            ScheduledJob.update(last_detail=line[:2000]).where(
                (ScheduledJob.name == self.name) & (ScheduledJob.last_outcome == "running")
            ).execute()
        except peewee.DatabaseError as exc:  # progress is worth less than the step itself
            self.log.warning("%s: progress not recorded: %s", self.name, exc)
