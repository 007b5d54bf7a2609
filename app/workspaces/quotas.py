"""Quotas per person and per group: workspaces in total and running, CPUs and memory of
the running ones. Checked when a workspace is created and when one starts (by anyone:
its owner, someone it is shared with, the IDE, SSH); a refusal names the quota, its
limit and the current usage.

A group's quota counts the workspaces of all its members; someone in several groups is
held to each of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from app import states
from app.models import Group, GroupMember, Quota, User, Workspace, utcnow
from app.states import Status as S
from app.workspaces import templates

# Statuses that hold (or are about to hold) a running container.
ACTIVE = states.ACTIVE  # holding (or about to hold) a container
FIELDS = ("max_workspaces", "max_running", "max_cpu", "max_memory_mb")


class QuotaExceeded(Exception):
    """The message says which quota, its limit and the usage."""


class QuotaError(Exception):
    """A quota setting is not valid; the message names the field."""


@dataclass
class Usage:
    workspaces: int = 0
    running: int = 0
    cpu: float = 0.0
    memory_mb: int = 0

    def to_dict(self) -> dict:
        return {
            "workspaces": self.workspaces,
            "running": self.running,
            "cpu": self.cpu,
            "memory_mb": self.memory_mb,
        }


def _owners(subject: User | Group) -> list[int]:
    if isinstance(subject, User):
        return [subject.id]
    return [m.user_id for m in GroupMember.select().where(GroupMember.group == subject)]


def usage(subject: User | Group, excluding: Workspace | None = None) -> Usage:
    found = Usage()
    query = Workspace.select().where(
        Workspace.owner.in_(_owners(subject)) & (Workspace.status != S.DELETED)
    )
    for ws in query:
        if excluding is not None and ws.id == excluding.id:
            continue
        found.workspaces += 1
        if ws.status in ACTIVE:
            cpu, memory = templates.resources(json.loads(ws.parameters))
            found.running += 1
            found.cpu += cpu * ws.containers
            found.memory_mb += memory * ws.containers
    return found


def _name(subject: User | Group) -> str:
    return f"user {subject.username}" if isinstance(subject, User) else f"group {subject.name}"


def quota_of(subject: User | Group) -> Quota | None:
    column = Quota.user if isinstance(subject, User) else Quota.group
    return Quota.get_or_none(column == subject)


def _subjects(owner: User) -> list[User | Group]:
    groups = Group.select().join(GroupMember).where(GroupMember.user == owner)
    return [owner, *groups]


def check(
    owner: User, ws: Workspace | None, values: dict, *, new: bool, containers: int | None = None
) -> None:
    """Refuse (QuotaExceeded) when running ``ws`` of ``owner`` (a new one when ``new``)
    with parameter ``values`` would go over a quota of the owner or their groups. Each of
    its ``containers`` (its compose services; as last made unless given) counts."""
    if containers is None:
        containers = ws.containers if ws is not None else 1
    cpu, memory = templates.resources(values)
    cpu, memory = cpu * containers, memory * containers
    services = f" ({containers} containers: its compose services)" if containers > 1 else ""
    for subject in _subjects(owner):
        quota = quota_of(subject)
        if quota is None:
            continue
        now = usage(subject, excluding=ws)
        checks = (
            ("max_workspaces", "workspaces", now.workspaces + 1, now.workspaces, new),
            ("max_running", "running workspaces", now.running + 1, now.running, True),
            ("max_cpu", "CPUs in running workspaces", now.cpu + cpu, now.cpu, True),
            ("max_memory_mb", "MB of memory in running workspaces", now.memory_mb + memory,
             now.memory_mb, True),
        )  # fmt: skip
        for field, what, after, current, applies in checks:
            limit = getattr(quota, field)
            if applies and limit is not None and after > limit:
                raise QuotaExceeded(
                    f"quota exceeded: {_name(subject)} may have {_number(limit)} {what} and "
                    f"has {_number(current)} (this one{services} would make {_number(after)}); "
                    "stop or "
                    "delete a workspace, or ask an admin to raise the quota"
                )


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def set_quota(subject: User | Group, values: dict) -> Quota:
    """Set (or with every field None, clear) the quota of ``subject``."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise QuotaError(f"unknown quota {unknown[0]!r}; use {', '.join(FIELDS)}")
    clean = {}
    for field in FIELDS:
        value = values.get(field)
        whole = field != "max_cpu"
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (whole and not float(value).is_integer())
        ):
            kind = "whole number" if whole else "number"
            raise QuotaError(f"{field} must be a non-negative {kind} or null, not {value!r}")
        clean[field] = None if value is None else int(value) if whole else float(value)
    quota = quota_of(subject)
    if quota is None:
        quota = Quota(user=subject if isinstance(subject, User) else None,
                      group=subject if isinstance(subject, Group) else None)  # fmt: skip
    for field, value in clean.items():
        setattr(quota, field, value)
    quota.updated_at = utcnow()
    quota.save()
    return quota


def to_dict(subject: User | Group) -> dict:
    quota = quota_of(subject)
    return {
        "subject": _name(subject),
        "limits": {f: getattr(quota, f) if quota else None for f in FIELDS},
        "usage": usage(subject).to_dict(),
    }
