"""Prometheus metrics read from the database at scrape time.

The web, worker and SSH processes each see part of what happens; the database sees all
of it and survives restarts, so the shared figures (workspaces by state, transition and
build durations, SSH sessions, scheduler outcomes) are computed from it when Prometheus
asks. Per-request API figures live in the web process (app.web.metrics).
"""

from __future__ import annotations

import json
from collections import defaultdict

import peewee
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from app.models import (
    Activity,
    AuditEvent,
    ScheduledJob,
    StateChange,
    Transition,
    Workspace,
)
from app.states import Status

# Seconds: from a cached start (about a second) to a cold build with features (minutes).
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, float("inf"))


def histogram(
    name: str, documentation: str, labels: list[str], samples: dict
) -> HistogramMetricFamily:
    """A histogram family from {label values: [durations]}."""
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, durations in sorted(samples.items()):
        buckets = [
            (str(bound), sum(1 for d in durations if d <= bound)) for bound in DURATION_BUCKETS
        ]
        buckets[-1] = ("+Inf", len(durations))
        family.add_metric(list(values), buckets, sum_value=sum(durations))
    return family


class DatabaseCollector:
    """The figures every Berth process contributes to, from the database."""

    def collect(self):
        yield self._workspaces()
        yield from self._transitions()
        yield from self._ssh()
        yield from self._scheduler()

    def _workspaces(self):
        counts = dict(
            Workspace.select(Workspace.status, peewee.fn.COUNT(Workspace.id))
            .group_by(Workspace.status)
            .tuples()
        )
        family = GaugeMetricFamily("berth_workspaces", "Workspaces by state", labels=["state"])
        for state in Status:
            family.add_metric([str(state)], counts.get(state, 0))
        return family

    def _transitions(self):
        durations = defaultdict(list)
        rows = (
            Transition.select(
                Transition.kind, Transition.status, Transition.started_at, Transition.finished_at
            )
            .where(Transition.finished_at.is_null(False) & Transition.started_at.is_null(False))
            .tuples()
        )
        for kind, status, started, finished in rows.iterator():
            durations[(kind, status)].append((finished - started).total_seconds())
        yield histogram(
            "berth_transition_duration_seconds",
            "How long workspace jobs took (create and start include any build)",
            ["kind", "outcome"],
            durations,
        )
        # A build is the time a job spent in "building", up to its next status.
        builds = defaultdict(list)
        changes = (
            StateChange.select(StateChange.transition, StateChange.to_status, StateChange.at)
            .where(StateChange.transition.is_null(False))
            .order_by(StateChange.transition, StateChange.id)
            .tuples()
        )
        entered = None
        for transition_id, status, at in changes.iterator():
            if entered and entered[0] == transition_id:
                builds[("succeeded" if status != "failed" else "failed",)].append(
                    (at - entered[1]).total_seconds()
                )
            entered = (transition_id, at) if status == "building" else None
        yield histogram(
            "berth_build_duration_seconds",
            "How long image builds took (the 'building' status of a job)",
            ["outcome"],
            builds,
        )

    def _ssh(self):
        open_now = (
            Activity.select(peewee.fn.COALESCE(peewee.fn.SUM(Activity.open_sessions), 0))
            .where(Activity.source == "ssh")
            .scalar()
        )
        yield GaugeMetricFamily(
            "berth_ssh_sessions_open", "SSH sessions open now", value=max(open_now or 0, 0)
        )
        total = CounterMetricFamily(
            "berth_ssh_sessions", "SSH sessions started, by kind", labels=["kind"]
        )
        counts = defaultdict(int)
        for (detail,) in (
            AuditEvent.select(AuditEvent.detail)
            .where(AuditEvent.action == "ssh.session.start")
            .tuples()
            .iterator()
        ):
            counts[json.loads(detail).get("kind", "exec")] += 1
        for kind in ("shell", "exec", "sftp"):
            total.add_metric([kind], counts[kind])
        yield total

    def _scheduler(self):
        runs = CounterMetricFamily(
            "berth_scheduler_job_runs", "Runs of the worker's scheduled jobs", labels=["job"]
        )
        failures = CounterMetricFamily(
            "berth_scheduler_job_failures", "Failed runs of scheduled jobs", labels=["job"]
        )
        last = GaugeMetricFamily(
            "berth_scheduler_job_last_success",
            "1 when the job's last run succeeded, 0 when it failed",
            labels=["job"],
        )
        for job in ScheduledJob.select().order_by(ScheduledJob.name):
            runs.add_metric([job.name], job.runs)
            failures.add_metric([job.name], job.failures)
            if job.last_outcome in ("succeeded", "failed"):
                last.add_metric([job.name], 1 if job.last_outcome == "succeeded" else 0)
        yield runs
        yield failures
        yield last
