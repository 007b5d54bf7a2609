"""Cost: running time metered from the recorded status changes, priced per template.

A workspace costs while it is ``running``: from the status change into ``running`` to
the next change out of it (or now). Its hourly rate is its template's ``per_hour`` plus
``per_cpu_hour`` × its CPUs plus ``per_gb_hour`` × its memory in GB, at the template's
current prices. Groups have monthly budgets (app.models.Budget); the worker's budget job
alerts at 80 % and, for a hard stop, stops the group's running workspaces at 100 %,
while ``check_budget`` refuses new starts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import peewee

from app.models import (
    Budget,
    Group,
    GroupMember,
    StateChange,
    Template,
    User,
    Workspace,
    utcnow,
)
from app.numbers import bounded
from app.states import Status as S


def resources(values: dict) -> tuple[float, int]:
    """The CPUs and memory (MB) a workspace with these parameter values asks for."""
    return float(values.get("cpu", 2)), int(values.get("memory", 4096))


PRICE_KEYS = ("per_hour", "per_cpu_hour", "per_gb_hour")
ALERT_AT = 0.8


class CostError(Exception):
    """A price or budget is not valid, or a start is refused by a budget."""


def validate_pricing(value) -> dict:
    if not isinstance(value, dict):
        raise CostError("pricing must be an object with per_hour, per_cpu_hour, per_gb_hour")
    unknown = sorted(set(value) - set(PRICE_KEYS))
    if unknown:
        raise CostError(f"unknown price {unknown[0]!r}; use {', '.join(PRICE_KEYS)}")
    try:
        return {key: bounded(price, f"pricing.{key}") for key, price in value.items()}
    except ValueError as exc:
        raise CostError(str(exc)) from None


def hourly_rate(pricing: dict, parameter_values: dict, containers: int = 1) -> float:
    """A running workspace's price per hour; each of its containers (a compose config's
    services) has the template's CPUs and memory."""
    cpu, memory_mb = resources(parameter_values)
    return (
        pricing.get("per_hour", 0.0)
        + pricing.get("per_cpu_hour", 0.0) * cpu * containers
        + pricing.get("per_gb_hour", 0.0) * memory_mb * containers / 1024
    )


def running_intervals(changes: list[tuple[str, datetime]], now: datetime):
    """(start, end) of each stretch in ``running`` from (status, at) in time order."""
    started = None
    for status, at in changes:
        if status == S.RUNNING and started is None:
            started = at
        elif status != S.RUNNING and started is not None:
            yield started, at
            started = None
    if started is not None:
        yield started, now


@dataclass
class Line:
    workspace_id: int
    workspace: str  # owner.name
    owner: str
    template: str | None
    rate: float
    hours: float
    cost: float

    def to_dict(self) -> dict:
        return {
            "workspace_id": self.workspace_id,
            "workspace": self.workspace,
            "owner": self.owner,
            "template": self.template,
            "hourly_rate": round(self.rate, 6),
            "hours": round(self.hours, 6),
            "cost": round(self.cost, 6),
        }


def workspace_costs(
    since: datetime, until: datetime, owners: list[int] | None = None
) -> list[Line]:
    """The cost of every workspace (deleted ones too) in [since, until)."""
    now = min(utcnow(), until)
    query = Workspace.select(Workspace, User, Template).join(User).switch(Workspace)
    query = query.join(Template, peewee.JOIN.LEFT_OUTER)
    if owners is not None:
        query = query.where(Workspace.owner.in_(owners))
    workspaces = {ws.id: ws for ws in query.where(Workspace.created_at < until)}
    changes = defaultdict(list)
    rows = (
        StateChange.select(StateChange.workspace, StateChange.to_status, StateChange.at)
        .where(StateChange.workspace.in_(list(workspaces)) & (StateChange.at < until))
        .order_by(StateChange.workspace, StateChange.at, StateChange.id)
        .tuples()
    )
    for workspace_id, status, at in rows.iterator():
        changes[workspace_id].append((status, at))
    lines = []
    for workspace_id, ws in workspaces.items():
        seconds = sum(
            max(0.0, (min(end, now) - max(start, since)).total_seconds())
            for start, end in running_intervals(changes[workspace_id], now)
        )
        pricing = json.loads(ws.template.pricing) if ws.template else {}
        rate = hourly_rate(pricing, json.loads(ws.parameters), ws.containers)
        hours = seconds / 3600
        lines.append(
            Line(
                ws.id,
                f"{ws.owner.username}.{ws.name}",
                ws.owner.username,
                ws.template.name if ws.template else None,
                rate,
                hours,
                hours * rate,
            )
        )
    return sorted(lines, key=lambda line: line.workspace_id)


def by_user(lines: list[Line]) -> dict[str, float]:
    totals = defaultdict(float)
    for line in lines:
        totals[line.owner] += line.cost
    return dict(totals)


def by_group(lines: list[Line]) -> dict[str, float]:
    """Each group's members' workspaces (someone in two groups counts in both)."""
    members = defaultdict(set)
    for group_name, username in (
        GroupMember.select(Group.name, User.username)
        .join(Group)
        .switch(GroupMember)
        .join(User)
        .tuples()
    ):
        members[username].add(group_name)
    totals = {g.name: 0.0 for g in Group.select()}
    for line in lines:
        for group_name in members[line.owner]:
            totals[group_name] += line.cost
    return totals


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def group_spend(group: Group, now: datetime | None = None) -> float:
    """What the group's members' workspaces cost this month so far."""
    now = now or utcnow()
    owners = [m.user_id for m in GroupMember.select().where(GroupMember.group == group)]
    return sum(line.cost for line in workspace_costs(month_start(now), now, owners))


def exhausted_budgets(owner: User, now: datetime | None = None) -> list[tuple[Budget, float]]:
    """The hard-stop budgets of the owner's groups that this month's spending used up."""
    found = []
    budgets = (
        Budget.select(Budget, Group)
        .join(Group)
        .join(GroupMember, on=(GroupMember.group == Group.id))
        .where((GroupMember.user == owner) & Budget.hard_stop)
    )
    for budget in budgets:
        spent = group_spend(budget.group, now)
        if spent >= budget.monthly:
            found.append((budget, spent))
    return found


def check_budget(owner: User) -> None:
    """Refuse (CostError) a new start of one of ``owner``'s workspaces over a budget."""
    for budget, spent in exhausted_budgets(owner):
        raise CostError(
            f"budget exhausted: group {budget.group.name} has spent {spent:.2f} of its "
            f"monthly {budget.monthly:.2f}, and its budget stops new starts until next month "
            "or until an admin raises it"
        )


def set_budget(group: Group, monthly, hard_stop: bool = False) -> Budget | None:
    """Set the group's monthly budget; ``monthly=None`` removes it."""
    if monthly is None:
        Budget.delete().where(Budget.group == group).execute()
        return None
    try:
        monthly = bounded(monthly, "the monthly budget")
    except ValueError as exc:
        raise CostError(str(exc)) from None
    if not isinstance(hard_stop, bool):
        raise CostError("hard_stop must be true or false")
    budget = Budget.get_or_none(Budget.group == group) or Budget(group=group)
    budget.monthly, budget.hard_stop, budget.updated_at = float(monthly), hard_stop, utcnow()
    budget.save()
    return budget


def budget_dict(budget: Budget, now: datetime | None = None) -> dict:
    spent = group_spend(budget.group, now)
    return {
        "group": budget.group.name,
        "monthly": budget.monthly,
        "hard_stop": budget.hard_stop,
        "spent": round(spent, 6),
        "used": round(spent / budget.monthly, 4) if budget.monthly else None,
        "alerted_month": budget.alerted_month,
        "stopped_month": budget.stopped_month,
    }
