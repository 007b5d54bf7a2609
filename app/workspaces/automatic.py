"""When a workspace stops or goes away by itself, and why: one pure function that the
scheduler acts on and the workspace page and API explain, so what people are told is
exactly what will happen.

What counts as use (see docs/lifecycle.md): SSH input and forwarded-port traffic, a new
SSH session, HTTP requests through Caddy, code-server's heartbeat (an open IDE tab), API
exec (a running one keeps the workspace up), and explicit keep-alives. An SSH session
that merely stays open does not: VS Code Remote-SSH and forgotten terminals keep
sessions open for days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.durations import format_duration, parse_duration
from app.states import Status as S

DEFAULT_IDLE_TIMEOUT = timedelta(minutes=30)
DEFAULT_WARN_BEFORE = timedelta(minutes=15)
NEVER = ("0", "never")
EXEC_LONGEST = timedelta(hours=1, minutes=5)  # the API's exec timeout is at most an hour


@dataclass(frozen=True)
class Policy:
    """A workspace's lifecycle rules, from its template's limits and its parameters."""

    idle_timeout: timedelta | None = DEFAULT_IDLE_TIMEOUT  # None: never stops when idle
    max_runtime: timedelta | None = None
    warn_before: timedelta | None = None  # default: 15 minutes or a quarter of the period
    dormant_after: timedelta | None = None
    dormant_backup: bool = False
    failed_cleanup_after: timedelta | None = None


def _duration(limits: dict, key: str) -> timedelta | None:
    value = limits.get(key)
    return parse_duration(str(value)) if value not in (None, "", 0, "0") else None


def idle_timeout_of(value) -> timedelta | None:
    """A stored idle_timeout parameter; "0" means never."""
    if value is None:
        return DEFAULT_IDLE_TIMEOUT
    return None if str(value).strip().lower() in NEVER else parse_duration(str(value))


def policy_for(template, parameters: dict) -> Policy:
    limits = json.loads(template.limits) if template else {}
    return Policy(
        idle_timeout=idle_timeout_of(parameters.get("idle_timeout")),
        max_runtime=_duration(limits, "max_runtime"),
        warn_before=_duration(limits, "warn_before"),
        dormant_after=_duration(limits, "dormant_after"),
        dormant_backup=bool(limits.get("dormant_backup")),
        failed_cleanup_after=_duration(limits, "failed_cleanup_after"),
    )


@dataclass(frozen=True)
class Use:
    """One activity row, as the policy sees it."""

    source: str
    at: datetime
    detail: str | None = None
    open_sessions: int = 0


@dataclass
class Outlook:
    """What will happen to a workspace if nobody does anything, and what is due now."""

    idle_since: datetime | None = None
    last_use: Use | None = None
    stops_at: datetime | None = None
    stop_rule: str | None = None  # idle, max-runtime
    deletes_at: datetime | None = None
    delete_rule: str | None = None  # ttl, dormancy, failed-cleanup
    warnings: list[str] = field(default_factory=list)
    due: tuple[str, str, str] | None = None  # (transition, rule, reason)


def _clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _warn_window(policy: Policy, period: timedelta) -> timedelta:
    return policy.warn_before or min(DEFAULT_WARN_BEFORE, period / 4)


def outlook(ws, policy: Policy, uses: list[Use], now: datetime) -> Outlook:
    """``ws`` needs status, status_since and ttl_expires_at."""
    look = Outlook()
    since = ws.status_since or now
    if ws.status == S.RUNNING:
        _running(look, policy, uses, since, now)
    deadlines = []
    if ws.ttl_expires_at is not None and ws.status not in (S.DELETING, S.DELETED):
        deadlines.append(
            (ws.ttl_expires_at, "ttl", f"its time to live ended at {_clock(ws.ttl_expires_at)}")
        )
    if ws.status == S.STOPPED and policy.dormant_after:
        deadlines.append(
            (
                since + policy.dormant_after,
                "dormancy",
                f"stopped since {_clock(since)}, longer than the template's "
                f"{format_duration(policy.dormant_after)}",
            )
        )
    if ws.status == S.FAILED and policy.failed_cleanup_after:
        deadlines.append(
            (
                since + policy.failed_cleanup_after,
                "failed-cleanup",
                f"failed since {_clock(since)}, longer than the template's "
                f"{format_duration(policy.failed_cleanup_after)}",
            )
        )
    if deadlines:
        at, rule, reason = min(deadlines)
        look.deletes_at, look.delete_rule = at, rule
        if now >= at and look.due is None:
            look.due = ("delete", rule, reason)
        elif rule == "ttl" and at - now <= _warn_window(policy, at - ws.created_at):
            look.warnings.append(
                f"This workspace will be deleted at {_clock(at)} when its time to live ends; "
                "extend it to keep it."
            )
        elif rule == "dormancy" and at - now <= _warn_window(policy, policy.dormant_after):
            look.warnings.append(
                f"This workspace has been stopped a long time and will be deleted at {_clock(at)}; "
                "start it to keep it."
            )
    return look


def _running(look: Outlook, policy: Policy, uses: list[Use], since: datetime, now: datetime):
    counted = [u for u in uses if u.at >= since]
    look.last_use = max(counted, key=lambda u: u.at) if counted else None
    # A running API exec keeps the workspace up; one counted longer than an exec may
    # last was left behind by a crashed web process.
    busy = [
        u for u in uses if u.source == "exec" and u.open_sessions > 0 and now - u.at < EXEC_LONGEST
    ]
    look.idle_since = now if busy else (look.last_use.at if look.last_use else since)
    stops = []
    if policy.idle_timeout is not None:
        last = (
            f"last use: {look.last_use.source}"
            + (f" ({look.last_use.detail})" if look.last_use.detail else "")
            + f" at {_clock(look.last_use.at)}"
            if look.last_use
            else f"no use since it started at {_clock(since)}"
        )
        stops.append(
            (
                look.idle_since + policy.idle_timeout,
                "idle",
                f"idle for {format_duration(policy.idle_timeout)}; {last}",
            )
        )
    if policy.max_runtime is not None:
        stops.append(
            (
                since + policy.max_runtime,
                "max-runtime",
                f"running since {_clock(since)}, the template's maximum of "
                f"{format_duration(policy.max_runtime)}",
            )
        )
    if not stops:
        return
    at, rule, reason = min(stops)
    look.stops_at, look.stop_rule = at, rule
    if now >= at:
        look.due = ("stop", rule, reason)
    if (
        policy.max_runtime is not None
        and now < since + policy.max_runtime
        and since + policy.max_runtime - now <= _warn_window(policy, policy.max_runtime)
    ):
        look.warnings.append(
            f"This workspace will be stopped at {_clock(since + policy.max_runtime)}: the template "
            f"allows {format_duration(policy.max_runtime)} of continuous running. Save your work."
        )


def describe(look: Outlook) -> dict:
    """The API's view of an outlook."""
    from app.models import stamp

    return {
        "idle_since": stamp(look.idle_since),
        "stops_at": stamp(look.stops_at),
        "stop_rule": look.stop_rule,
        "deletes_at": stamp(look.deletes_at),
        "delete_rule": look.delete_rule,
        "warnings": look.warnings,
    }
