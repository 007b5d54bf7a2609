"""The warm pool: sandboxes prepared ahead (built, started, set up) per template, claimed
by API creates so they return exec-ready at once, refilled by the worker.

A pool member belongs to Berth's pool account and waits in the status ``pooled``: no
owner's quota, cost, idle timeout or TTL applies to it. Claiming it, in one transaction,
gives it its new owner, name, TTL and egress allowlist, and makes it ``running`` (its
cost starts then). It is as fresh as a new one: never used (clean volumes), its hostname
is ``sandbox-<id>`` like any sandbox's, and its token (BERTH_TOKEN) is made at the claim.
Only requests the pool can serve exactly claim: the template alone, default parameters.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import peewee

from app import audit, states
from app.db import database, write_transaction
from app.models import Template, Transition, User, Workspace, utcnow
from app.states import Cause, JobStatus, Kind
from app.states import Status as S
from app.workspaces import templates

POOL_USER = "berth-pool"  # not a valid username for people, so never a person's


def pool_user() -> User:
    """Berth's own account for pool members: no password, disabled (nobody logs in)."""
    user = User.get_or_none(User.username == POOL_USER)
    if user is None:
        try:
            with database.atomic():
                user = User.create(
                    username=POOL_USER, password_hash=None, role="member", disabled_at=utcnow()
                )
        except peewee.IntegrityError:
            user = User.get(User.username == POOL_USER)
    return user


def size_of(template: Template) -> int:
    return int(json.loads(template.limits or "{}").get("pool_size") or 0)


def members(template: Template):
    """Pool members of ``template`` on their way or waiting."""
    return Workspace.select().where(
        (Workspace.owner == pool_user())
        & (Workspace.template == template)
        & Workspace.status.in_((S.PENDING, S.BUILDING, S.STARTING, S.POOLED))
    )


def refill(data_dir, create) -> list[str]:
    """Create what is missing in every template's pool with ``create(owner, name,
    template_name)`` (service.create, passed in to keep this module below it)."""
    made = []
    # Read before writing: SQLite refuses a write at once while the same connection
    # still reads rows another process has written since ("database is locked").
    for template in list(Template.select().where(Template.enabled)):
        wanted = size_of(template)
        if wanted <= 0:
            continue
        missing = wanted - members(template).count()
        for _ in range(max(0, missing)):
            name = f"pool-{secrets.token_hex(4)}"
            create(pool_user(), name, template.name)
            made.append(f"{template.name}: {name}")
    return made


def compatible(template: Template | None, body: dict) -> bool:
    """Whether a create request can be served by a pool member of ``template``."""
    if template is None or size_of(template) <= 0:
        return False
    if body.get("repo") or body.get("restore"):
        return False
    given = body.get("parameters") or {}
    defaults = templates.resolve_parameters(template, {}).values
    try:
        asked = templates.resolve_parameters(template, given).values
    except templates.ParameterError:
        return False
    # The TTL is set at the claim; everything else must be what the member was made with.
    return {k: v for k, v in asked.items() if k != "ttl"} == {
        k: v for k, v in defaults.items() if k != "ttl"
    }


def claim(
    template: Template,
    owner: User,
    name: str,
    *,
    lifetime: timedelta | None,
    egress_allow: list[str] | None,
    actor: str,
    source_ip: str | None,
) -> Workspace | None:
    """Give a waiting member to ``owner`` as ``name``; None when none is waiting."""
    with write_transaction():
        ws = (
            Workspace.select()
            .where(
                (Workspace.owner == pool_user())
                & (Workspace.template == template)
                & (Workspace.status == S.POOLED)
                # Not one a job is working on (reconcile setting it up again, say).
                & Workspace.id.not_in(
                    Transition.select(Transition.workspace).where(
                        Transition.status.in_(states.ACTIVE_JOB)
                    )
                )
            )
            .order_by(Workspace.id)
            .first()
        )
        if ws is None:
            return None
        now = utcnow()
        job = Transition.create(
            workspace=ws,
            kind=Kind.CREATE,
            status=JobStatus.SUCCEEDED,
            cause=Cause.API,
            actor=actor,
            options=json.dumps({"pool": True}),
            started_at=now,
            finished_at=now,
        )
        # Conditional on still being pooled: two claims at once never get the same one.
        taken = states.move(
            ws,
            S.RUNNING,
            job,
            message="claimed from the warm pool",
            expect=S.POOLED,
            at=now,
            owner=owner,
            name=name,
            live_name=name,
            created_at=now,
            ttl_expires_at=now + lifetime if lifetime else None,
            egress_allow=json.dumps(egress_allow) if egress_allow else None,
        )
        if not taken:
            job.delete_instance()
            return None
        audit.record(
            "workspace.create.request",
            actor=actor,
            source_ip=source_ip,
            target=f"workspace:{owner.username}.{name}",
            cause=Cause.API,
            transition=job.id,
            workspace_id=ws.id,
            pool=True,
        )
    return Workspace.get_by_id(ws.id)
