"""Anomaly alerts for agent sandboxes, checked by the worker every minute:

- ``long_running``: running longer than its template's ``expected_duration``;
- ``cpu_pegged``: using at least 90 % of its CPU limit for ``cpu_alert_after``
  (default 10m) without a break;
- ``egress_denied_burst``: at least ``denied_egress_burst`` (default 20) refused
  connections or DNS lookups in five minutes.

Each alert is an audit record (``anomaly.<kind>``, shown to admins on the admin page)
and, when ``BERTH_ALERT_WEBHOOK`` is set, a JSON POST to it. One alert per sandbox and
kind per hour.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests

from app import audit
from app.durations import parse_duration
from app.models import AuditEvent, Template, User, Workspace, stamp, utcnow
from app.runtime import ProvisionError
from app.states import Status as S
from app.workspaces import templates

log = logging.getLogger("berth.anomalies")
PEGGED = 0.9
DENIED_WINDOW = timedelta(minutes=5)
REPEAT_AFTER = timedelta(hours=1)


@dataclass
class CpuSample:
    at: datetime
    usage_ns: int


@dataclass
class Detector:
    """Keeps the CPU samples between runs (the worker holds one)."""

    samples: dict[int, list[CpuSample]] = field(default_factory=dict)
    pegged_since: dict[int, datetime] = field(default_factory=dict)

    def run(self, settings, runtime, now: datetime | None = None) -> list[str]:
        now = now or utcnow()
        raised = []
        sandboxes = (
            Workspace.select(Workspace, User, Template)
            .join(User)
            .switch(Workspace)
            .join(Template)
            .where((Workspace.status == S.RUNNING) & (Template.profile == "agent"))
        )
        for ws in sandboxes:
            limits = json.loads(ws.template.limits or "{}")
            for kind, detail in self._check(ws, limits, runtime, now):
                if _alert(settings, ws, kind, detail, now):
                    raised.append(f"{ws.owner.username}/{ws.name}: {kind}")
        return raised

    def _check(self, ws: Workspace, limits: dict, runtime, now: datetime):
        expected = limits.get("expected_duration")
        if expected and ws.status_since:
            running = now - ws.status_since
            if running > parse_duration(str(expected)):
                yield (
                    "long_running",
                    {
                        "running_for_seconds": int(running.total_seconds()),
                        "expected": expected,
                    },
                )
        cpu = self._cpu(ws, runtime, now)
        if cpu is not None:
            if cpu >= PEGGED:
                since = self.pegged_since.setdefault(ws.id, self._previous(ws.id))
                after = parse_duration(str(limits.get("cpu_alert_after") or "10m"))
                if now - since >= after:
                    yield "cpu_pegged", {"cpu_fraction": round(cpu, 3), "since": stamp(since)}
            else:
                self.pegged_since.pop(ws.id, None)
        threshold = int(limits.get("denied_egress_burst") or 20)
        denied = (
            AuditEvent.select()
            .where(
                (AuditEvent.target == f"workspace:{ws.owner.username}.{ws.name}")
                & AuditEvent.action.in_(("egress.deny", "egress.dns"))
                & (AuditEvent.at >= now - DENIED_WINDOW)
            )
            .count()
        )
        if denied >= threshold:
            yield "egress_denied_burst", {"denied": denied, "window_minutes": 5}

    def _previous(self, ws_id: int) -> datetime:
        return self.samples[ws_id][0].at

    def _cpu(self, ws: Workspace, runtime, now: datetime) -> float | None:
        """The share of its CPU limit the sandbox used since the last sample."""
        if not ws.container_id:
            return None
        try:
            usage = runtime.usage(ws.container_id).cpu_ns
        except ProvisionError:  # gone meanwhile
            return None
        history = self.samples.setdefault(ws.id, [])
        history.append(CpuSample(now, usage))
        del history[:-2]
        if len(history) < 2:
            return None
        first, last = history
        elapsed = (last.at - first.at).total_seconds()
        cpus, _ = templates.resources(json.loads(ws.parameters))
        if elapsed <= 0:
            return None
        return (last.usage_ns - first.usage_ns) / 1e9 / elapsed / cpus


def _alert(settings, ws: Workspace, kind: str, detail: dict, now: datetime) -> bool:
    """Record (and send) the alert unless the same one went out within the hour."""
    target = f"workspace:{ws.owner.username}.{ws.name}"
    recent = (
        AuditEvent.select()
        .where(
            (AuditEvent.action == f"anomaly.{kind}")
            & (AuditEvent.target == target)
            & (AuditEvent.at >= now - REPEAT_AFTER)
        )
        .exists()
    )
    if recent:
        return False
    audit.record(f"anomaly.{kind}", actor="anomalies", target=target, outcome="denied", **detail)
    if settings.alert_webhook:
        payload = {
            "kind": kind,
            "workspace": f"{ws.owner.username}.{ws.name}",
            "workspace_id": ws.id,
            "template": ws.template.name,
            "at": stamp(now),
            "detail": detail,
        }
        try:
            requests.post(settings.alert_webhook, json=payload, timeout=5).raise_for_status()
        except requests.RequestException as exc:
            log.warning("anomalies: the webhook refused %s for %s: %s", kind, ws.name, exc)
    return True
