"""Following a workspace's job log as Server-Sent Events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from app.db import database
from app.models import Transition
from app.states import JobStatus as J
from app.states import Kind

POLL_SECONDS = 0.3
MAX_SECONDS = 3600


def _event(data: str, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


def sse(workspace_id: int, follow: bool = True) -> Iterator[str]:
    """The latest job's log line by line, then an ``end`` event with its outcome. With
    ``follow``, lines are sent as the worker writes them until the job ends."""
    started = time.monotonic()
    sent = 0
    job_id = None
    yield ": berth log stream\n\n"
    while True:
        with database.connection_context():
            # The job a person follows: not reconcile's bookkeeping of a repair.
            query = Transition.select().where(
                (Transition.workspace == workspace_id) & (Transition.kind != Kind.RECONCILE)
            )
            job = (
                query.where(Transition.id == job_id).first()
                if job_id
                else query.order_by(Transition.id.desc()).first()
            )
        if job is None:
            yield _event(json.dumps({"status": "none"}), "end")
            return
        if job_id is None:
            job_id = job.id
            yield _event(
                json.dumps({"id": job.id, "kind": job.kind, "status": job.status}), "transition"
            )
        lines = job.log.split("\n")[:-1] if job.log else []
        for line in lines[sent:]:
            yield _event(line)
        sent = len(lines)
        finished = job.status in (J.SUCCEEDED, J.FAILED)
        if finished or not follow or time.monotonic() - started > MAX_SECONDS:
            yield _event(
                json.dumps({"id": job.id, "status": job.status, "error": job.error}), "end"
            )
            return
        time.sleep(POLL_SECONDS)
