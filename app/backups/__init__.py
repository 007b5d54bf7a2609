"""Backups of the database (nightly, with retention) and of workspace volumes (on demand
and before a dormancy deletion). Files only: a backup must outlive the database it
describes, so nothing about backups is stored in that database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class BackupError(Exception):
    """A backup or restore could not be made; the message says why."""


TIME_FORMAT = "%Y%m%dT%H%M%SZ"
STAMP = re.compile(r"(\d{8}T\d{6}Z)")


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime(TIME_FORMAT)


def parse_timestamp(name: str) -> datetime | None:
    found = STAMP.search(name)
    return datetime.strptime(found.group(1), TIME_FORMAT) if found else None


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass(frozen=True)
class Backup:
    kind: str  # database or workspace
    id: str
    path: Path
    taken_at: datetime
    size: int
    meta: dict

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "id": self.id,
            "path": str(self.path),
            "taken_at": self.taken_at.isoformat() + "Z",
            "size": self.size,
            **({"workspace": self.meta} if self.meta else {}),
        }
