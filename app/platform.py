"""What an admin should know about Berth itself: a worker that is not running (so no job
runs), scheduled jobs whose last run failed. Shown as a banner on every page to admins."""

from __future__ import annotations

from app import health
from app.config import Settings
from app.models import ScheduledJob


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
