"""Session recording for workspaces whose template sets ``limits.record_sessions``: SSH
pty sessions as asciicast v2 (replayed in the browser by Berth's own player), API execs
as their command, output and exit code. Files live under ``<data dir>/recordings``;
``BERTH_RECORDING_RETENTION_DAYS`` says how long (the audit records keep their id)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import timedelta
from pathlib import Path

from app.models import Recording, Workspace, utcnow


def may_read(user, ws: Workspace) -> bool:
    """What was typed and printed in a workspace is its owner's: those it is shared with
    do not read it; admins and auditors do."""
    from app import authz

    return authz.allows(user, ws, authz.MANAGE) or authz.can(user, "audit.read")


def wanted(ws: Workspace) -> bool:
    return bool(ws.template and json.loads(ws.template.limits or "{}").get("record_sessions"))


def _path(data_dir: Path, ws: Workspace, kind: str, suffix: str) -> Path:
    folder = Path(data_dir) / "recordings" / str(ws.id)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / f"{utcnow():%Y%m%dT%H%M%S}-{kind}-{secrets.token_hex(3)}{suffix}"


class Cast:
    """An asciicast v2 file written as the session goes (output and input events)."""

    def __init__(self, data_dir: Path, ws: Workspace, actor: str, width: int, height: int,
                 title: str, term: str = "xterm"):  # fmt: skip
        if isinstance(term, bytes):  # paramiko hands the pty's TERM over as bytes
            term = term.decode(errors="replace")
        self.path = _path(data_dir, ws, "ssh", ".cast")
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.handle = self.path.open("w", encoding="utf-8")
        header = {
            "version": 2,
            # A client without a terminal of its own (ssh -tt from a script) sends 0x0.
            "width": width or 80,
            "height": height or 24,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": term, "SHELL": "/bin/sh"},
        }
        self.handle.write(json.dumps(header) + "\n")
        self.row = Recording.create(
            workspace=ws, kind="ssh", actor=actor, title=title, path=str(self.path)
        )

    def event(self, kind: str, data: bytes) -> None:
        with self.lock:
            if not self.handle.closed:
                at = round(time.monotonic() - self.started, 6)
                self.handle.write(json.dumps([at, kind, data.decode(errors="replace")]) + "\n")

    def resize(self, width: int, height: int) -> None:
        self.event("r", f"{width}x{height}".encode())

    def close(self, exit_code: int | None) -> Recording:
        with self.lock:
            self.handle.close()
        self.row.size = self.path.stat().st_size
        self.row.exit_code = exit_code
        self.row.ended_at = utcnow()
        self.row.save()
        return self.row


def save_exec(data_dir: Path, ws: Workspace, actor: str, command: list[str], output: list,
              exit_code: int | None, started) -> Recording:  # fmt: skip
    """An exec: its command, its output in order (stream, text, seconds), its exit code."""
    path = _path(data_dir, ws, "exec", ".json")
    body = {
        "command": command,
        "started_at": started.isoformat() + "Z",
        "output": output,
        "exit_code": exit_code,
    }
    path.write_text(json.dumps(body))
    return Recording.create(
        workspace=ws,
        kind="exec",
        actor=actor,
        title=" ".join(command)[:500],
        path=str(path),
        size=path.stat().st_size,
        exit_code=exit_code,
        started_at=started,
        ended_at=utcnow(),
    )


GONE = "the recording's file is gone (retention)"


def content(row: Recording) -> tuple[bytes, str] | None:
    """The file and its media type, or None when retention removed it."""
    try:
        body = Path(row.path).read_bytes()
    except FileNotFoundError:
        return None
    return body, "application/x-asciicast" if row.kind == "ssh" else "application/json"


def prune(retention_days: int) -> int:
    """Delete recordings older than the retention (files and rows)."""
    if retention_days <= 0:
        return 0
    old = Recording.select().where(Recording.started_at < utcnow() - timedelta(days=retention_days))
    count = 0
    for row in old:
        Path(row.path).unlink(missing_ok=True)
        row.delete_instance()
        count += 1
    return count


def to_dict(row: Recording) -> dict:
    from app.models import stamp

    return {
        "id": row.id,
        "kind": row.kind,
        "actor": row.actor,
        "title": row.title,
        "size": row.size,
        "exit_code": row.exit_code,
        "started_at": stamp(row.started_at),
        "ended_at": stamp(row.ended_at),
    }
