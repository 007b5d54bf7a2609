"""The audit log's chain on SQLite and PostgreSQL: appends, verification that names the
first altered or missing record, pruning that keeps the chain verifiable, export, CLI."""

import json
import subprocess
import sys
from datetime import timedelta

from app import audit
from app.db import database
from app.models import AuditEvent, utcnow


def _fill(count: int) -> list[AuditEvent]:
    return [
        audit.record("test.event", actor="ann", target=f"workspace:ann.w{i}", number=i)
        for i in range(count)
    ]


def _cli(settings, *args):
    return subprocess.run(
        [sys.executable, "-m", "app", *args, "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        env={"BERTH_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
    )


def test_records_chain_and_verify(instance):
    rows = _fill(5)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == audit.GENESIS
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 5))
    verdict = audit.verify()
    assert verdict.ok and verdict.checked == 5, verdict.message
    result = _cli(instance, "audit", "verify")
    assert result.returncode == 0 and "intact: 5 records verified" in result.stdout


def test_an_edited_record_is_named(instance):
    _fill(5)
    # An edit straight in the database, as someone with SQL access would make it.
    database.execute_sql("UPDATE audit_events SET outcome = 'failure' WHERE seq = 3")
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 3
    assert verdict.message == "record 3 was altered"
    result = _cli(instance, "audit", "verify")
    assert result.returncode == 1
    assert "NOT intact: record 3 was altered (2 records before it)" in result.stderr


def test_an_edit_that_recomputes_plain_hashes_is_still_caught(instance):
    """Without the key (a file in the data dir), a forger cannot redo the chain."""
    import hashlib

    rows = _fill(3)
    forged = hashlib.sha256(b"anything").hexdigest()
    AuditEvent.update(actor="mallory", hash=forged).where(AuditEvent.seq == 2).execute()
    AuditEvent.update(prev_hash=forged).where(AuditEvent.seq == 3).execute()
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 2 and rows


def test_a_deleted_record_is_named(instance):
    _fill(6)
    database.execute_sql("DELETE FROM audit_events WHERE seq = 4")
    verdict = audit.verify()
    assert not verdict.ok and verdict.first_bad_seq == 4
    assert verdict.message == "record 4 is missing"
    database.execute_sql("DELETE FROM audit_events WHERE seq IN (5, 6)")
    assert audit.verify().ok  # the tail: see the head that verify prints
    database.execute_sql("DELETE FROM audit_events WHERE seq = 1")
    verdict = audit.verify()
    assert not verdict.ok and "records 1 to 1 are missing" in verdict.message


def test_pruning_keeps_the_chain_verifiable(instance):
    old = _fill(4)
    AuditEvent.update(at=utcnow() - timedelta(days=40)).where(AuditEvent.seq <= 3).execute()
    # Moving times is itself an edit, so re-key the test rows' hashes as if written then.
    key = audit._key()
    prev = audit.GENESIS
    for row in AuditEvent.select().order_by(AuditEvent.seq):
        row.prev_hash = prev
        row.hash = audit._digest(key, prev, row)
        row.save()
        prev = row.hash
    assert audit.verify().ok and old
    assert audit.prune(30) == 3
    remaining = list(AuditEvent.select().order_by(AuditEvent.seq))
    assert [r.seq for r in remaining] == [4, 5]
    assert remaining[-1].action == "audit.prune"
    assert json.loads(remaining[-1].detail)["through_seq"] == 3
    verdict = audit.verify()
    assert verdict.ok and verdict.checked == 2, verdict.message
    assert audit.prune(30) == 0  # nothing more is old enough
    # Removing the prune record exposes the gap.
    database.execute_sql("DELETE FROM audit_events WHERE seq = 5")
    assert not audit.verify().ok


def test_export_and_filters(instance, tmp_path):
    _fill(3)
    audit.record("login", actor="bob", source_ip="10.0.0.9", outcome="failure", reason="bad")
    lines = list(audit.export())
    assert len(lines) == 4
    last = json.loads(lines[-1])
    assert last["actor"] == "bob" and last["source_ip"] == "10.0.0.9"
    assert last["outcome"] == "failure" and last["detail"] == {"reason": "bad"}
    assert last["prev_hash"] == json.loads(lines[-2])["hash"]
    assert list(audit.export(utcnow() + timedelta(minutes=1))) == []
    assert [r.actor for r in audit.search(action="login")] == ["bob"]
    assert [r.seq for r in audit.search(workspace="ann.w1")] == [2]
    assert audit.search(actor="ann").count() == 3
    out = tmp_path / "audit.jsonl"
    result = _cli(instance, "audit", "export", "--since", "2000-01-01", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines() == lines
    bad = _cli(instance, "audit", "export", "--since", "yesterday")
    assert bad.returncode == 2 and "--since: 'yesterday' is not a time" in bad.stderr
