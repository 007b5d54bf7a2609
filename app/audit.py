"""The audit log: one append-only record per security-relevant event, tamper-evident.

Each record carries ``seq`` (1, 2, 3, … with no gaps), the hash of the record before it,
and its own hash: an HMAC-SHA256, keyed with the instance's audit key (a file in the
data dir, never in the database), over the previous hash and the record's canonical
JSON. Someone who can write to the database but not read the data dir can neither edit
a record nor remove one from the middle without ``verify`` naming it.

Pruning (retention) deletes the oldest records and appends an ``audit.prune`` record
naming the last pruned ``seq`` and its hash, so the remaining chain still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import peewee

from app import db
from app.db import database, write_transaction
from app.models import AuditEvent, stamp, utcnow

GENESIS = "0" * 64
OUTCOMES = ("success", "failure", "denied")
_PG_LOCK_KEY = 0x6175646974  # "audit": appends are serialised on PostgreSQL


def _key() -> bytes:
    _key_file = db.audit_key_file  # beside the database this process opened
    if _key_file is None:
        raise RuntimeError("the audit key file is not set; open the database first")
    try:
        return bytes.fromhex(_key_file.read_text().strip())
    except FileNotFoundError:
        pass
    try:
        fd = os.open(_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return bytes.fromhex(_key_file.read_text().strip())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


def _fields(row: AuditEvent) -> dict:
    """What a record says (its detail as stored JSON text): what the hash covers."""
    return {
        "seq": row.seq,
        "at": stamp(row.at),
        "actor": row.actor,
        "source_ip": row.source_ip,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "detail": row.detail,
    }


def _canonical(row: AuditEvent) -> str:
    return json.dumps(_fields(row), sort_keys=True, separators=(",", ":"))


def _digest(key: bytes, prev_hash: str, row: AuditEvent) -> str:
    return hmac.new(key, (prev_hash + "\n" + _canonical(row)).encode(), hashlib.sha256).hexdigest()


def record(
    action: str,
    *,
    actor: str | None,
    target: str | None = None,
    outcome: str = "success",
    source_ip: str | None = None,
    **detail,
) -> AuditEvent:
    """Append one record. Inside a caller's transaction it commits (or rolls back) with
    the change it describes."""
    assert outcome in OUTCOMES, outcome
    key = _key()
    with write_transaction():
        if isinstance(database.obj, peewee.PostgresqlDatabase):
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        last = AuditEvent.select().order_by(AuditEvent.seq.desc()).first()
        row = AuditEvent(
            seq=(last.seq + 1) if last else 1,
            at=utcnow(),
            actor=(actor or "system")[:64],
            source_ip=source_ip,
            action=action,
            target=target,
            outcome=outcome,
            detail=json.dumps(detail, sort_keys=True, default=str),
            prev_hash=last.hash if last else GENESIS,
        )
        row.hash = _digest(key, row.prev_hash, row)
        row.save(force_insert=True)
    return row


def to_dict(row: AuditEvent) -> dict:
    return {
        **_fields(row),
        "detail": json.loads(row.detail),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def search(
    *,
    actor: str | None = None,
    workspace: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
):
    """Records matching every filter given (``action`` matches a prefix: ``workspace.``),
    newest first."""
    query = AuditEvent.select().order_by(AuditEvent.seq.desc())
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if workspace:
        query = query.where(AuditEvent.target == f"workspace:{workspace}")
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if since:
        query = query.where(AuditEvent.at >= since)
    if until:
        query = query.where(AuditEvent.at < until)
    return query


def export(since: datetime | None = None) -> Iterator[str]:
    """JSON lines, oldest first, for a SIEM."""
    query = AuditEvent.select().order_by(AuditEvent.seq)
    if since:
        query = query.where(AuditEvent.at >= since)
    for row in query.iterator():
        yield json.dumps(to_dict(row), sort_keys=True)


@dataclass
class Verdict:
    ok: bool
    checked: int
    message: str
    first_bad_seq: int | None = None


def verify() -> Verdict:
    """Walk the chain oldest first; name the first altered or missing record."""
    key = _key()
    anchors = {}  # seq of the last pruned record -> its hash, from audit.prune records
    for row in AuditEvent.select().where(AuditEvent.action == "audit.prune"):
        about = json.loads(row.detail)
        anchors[about.get("through_seq")] = about.get("last_hash")
    previous: AuditEvent | None = None
    checked = 0
    for row in AuditEvent.select().order_by(AuditEvent.seq).iterator():
        if previous is None:
            expected_prev = GENESIS if row.seq == 1 else anchors.get(row.seq - 1)
            if expected_prev is None:
                return Verdict(
                    False,
                    checked,
                    f"records 1 to {row.seq - 1} are missing (no prune record covers them)",
                    1,
                )
        else:
            if row.seq != previous.seq + 1:
                gap = (
                    f"record {previous.seq + 1} is missing"
                    if row.seq == previous.seq + 2
                    else f"records {previous.seq + 1} to {row.seq - 1} are missing"
                )
                return Verdict(False, checked, gap, previous.seq + 1)
            expected_prev = previous.hash
        if row.prev_hash != expected_prev:
            return Verdict(
                False,
                checked,
                f"record {row.seq} does not follow record {row.seq - 1}: the chain is "
                "broken there (a record was replaced or removed)",
                row.seq,
            )
        if not hmac.compare_digest(row.hash, _digest(key, row.prev_hash, row)):
            return Verdict(False, checked, f"record {row.seq} was altered", row.seq)
        previous = row
        checked += 1
    head = f"; head {previous.seq} {previous.hash[:16]}…" if previous else ""
    return Verdict(True, checked, f"{checked} records verified{head}")


def prune(retention_days: int, now: datetime | None = None) -> int:
    """Delete records older than ``retention_days`` and record that it happened."""
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    with write_transaction():
        last_old = (
            AuditEvent.select()
            .where(AuditEvent.at < cutoff)
            .order_by(AuditEvent.seq.desc())
            .first()
        )
        if last_old is None:
            return 0
        removed = AuditEvent.delete().where(AuditEvent.seq <= last_old.seq).execute()
        record(
            "audit.prune",
            actor="system",
            outcome="success",
            through_seq=last_old.seq,
            last_hash=last_old.hash,
            removed=removed,
            retention_days=retention_days,
        )
    return removed
