"""Database backups: SQLite's online backup API (embedded mode) or ``pg_dump -Fc``
(PostgreSQL), written to a temporary name and renamed when complete, so a failed backup
never replaces or removes a good one."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from app.backups import Backup, BackupError, parse_timestamp, size_of, timestamp
from app.config import Settings

SUFFIXES = {".sqlite3": "sqlite", ".pgdump": "postgresql"}
MAGIC = {b"SQLite format 3\x00": "sqlite", b"PGDMP": "postgresql"}


def folder(settings: Settings) -> Path:
    return settings.backups / "database"


def _sqlite_path(settings: Settings) -> Path:
    # sqlite:////abs/path has the path "//abs/path"; one leading slash is the same file.
    return Path("/" + urlsplit(settings.database_url).path.lstrip("/"))


def backup_now(settings: Settings, now: datetime | None = None) -> Backup:
    """Write a complete backup of the instance's database; raise BackupError if not."""
    target = folder(settings)
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o700)  # dumps hold every secret in the database
    suffix = ".sqlite3" if settings.is_sqlite else ".pgdump"
    final = target / f"berth-{timestamp(now)}{suffix}"
    partial = final.with_name(final.name + ".partial")
    try:
        if settings.is_sqlite:
            _sqlite_copy(_sqlite_path(settings), partial)
        else:
            _run(
                ["pg_dump", "--format=custom", "--no-owner", "--file", str(partial)],
                settings.database_url,
                "pg_dump",
            )
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return _describe(final)


def _sqlite_copy(source: Path, destination: Path) -> None:
    if not source.exists():
        raise BackupError(f"the database file {source} does not exist")
    try:
        src = sqlite3.connect(source)
        dst = sqlite3.connect(destination)
        with dst:
            src.backup(dst)  # consistent even while web and worker write
        src.close()
        dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {source} failed: {exc}") from None


def _run(command: list[str], url: str, what: str) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (apt-get install postgresql-client)")
    done = subprocess.run(  # noqa: S603
        [*command, "--dbname", url], capture_output=True, text=True, timeout=6 * 3600
    )
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip()[-500:]}")


def _describe(path: Path) -> Backup:
    return Backup("database", path.name, path, parse_timestamp(path.name), size_of(path), meta={})


def list_backups(settings: Settings) -> list[Backup]:
    """Complete database backups, newest first (other files in the folder are ignored)."""
    found = [
        _describe(p)
        for p in folder(settings).glob("berth-*")
        if p.suffix in SUFFIXES and parse_timestamp(p.name)
    ]
    return sorted(found, key=lambda b: b.taken_at, reverse=True)


def retention(settings: Settings) -> list[Path]:
    """Keep the newest backup of each of the last N days and of each of the last M ISO
    weeks that have backups (and always the newest); delete the rest. Returns the
    removed files."""
    backups = list_backups(settings)
    keep: set[Path] = {backups[0].path} if backups else set()
    for width, period in (
        (settings.backup_keep_daily, lambda b: b.taken_at.date()),
        (settings.backup_keep_weekly, lambda b: b.taken_at.isocalendar()[:2]),
    ):
        seen: set = set()
        for backup in backups:  # newest first: the first of a period is its newest
            key = period(backup)
            if key not in seen and len(seen) < width:
                seen.add(key)
                keep.add(backup.path)
    removed = [b.path for b in backups if b.path not in keep]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def kind_of(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(16)
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    raise BackupError(f"{path} is neither a SQLite backup nor a pg_dump custom-format file")


def _table_rows(settings: Settings) -> dict[str, int]:
    """Tables of the target database and their row counts (empty: a fresh database)."""
    from app.db import make_database

    db = make_database(settings.database_url)
    try:
        db.connect()
        return {
            name: db.execute_sql(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]  # noqa: S608
            for name in db.get_tables()
        }
    finally:
        db.close()


def _not_owners_alone(settings: Settings, name: str) -> None:
    """Workspaces' volumes outlive the database: a restored one may no longer know who
    used them since the dump, so none offers its owner's git credentials any more
    (app.workspaces.strangers). A dump older than that record gets it by migration."""
    from app.db import make_database

    db = make_database(settings.database_url)
    try:
        db.connect()
        if "credentials_off" in {c.name for c in db.get_columns("workspaces")}:
            db.execute_sql(
                f"UPDATE workspaces SET credentials_off = {db.param} "  # noqa: S608
                "WHERE credentials_off IS NULL",
                (f"the database was restored from {name}",),
            )
    finally:
        db.close()


def restore(settings: Settings, path: Path, force: bool = False) -> str:
    """Restore ``path`` into the instance's database. A database that holds data is
    only replaced with ``force``, and then only after a backup of it. Returns a report."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist")
    kind = kind_of(path)
    engine = "sqlite" if settings.is_sqlite else "postgresql"
    if kind != engine:
        raise BackupError(
            f"{path.name} is a {kind} backup; this instance's database is {engine} "
            "(BERTH_DATABASE_URL)"
        )
    existing = (
        _table_rows(settings) if not settings.is_sqlite or _sqlite_path(settings).exists() else {}
    )
    rows = sum(existing.values())
    report = []
    if rows:
        if not force:
            raise BackupError(
                f"the database already holds data ({rows} rows in {len(existing)} tables); "
                "restore into a fresh database, or pass --force to replace it "
                "(a backup of it is taken first)"
            )
        safety = backup_now(settings)
        report.append(f"the data it replaced is saved in {safety.path}")
    if settings.is_sqlite:
        target = _sqlite_path(settings)
        for leftover in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            leftover.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(path, target)
    else:
        clean = ["--clean", "--if-exists"] if existing else []
        _run(
            ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", *clean, str(path)],
            settings.database_url,
            "pg_restore",
        )
    _not_owners_alone(settings, path.name)
    restored = _table_rows(settings)
    report.insert(
        0, f"restored {sum(restored.values())} rows in {len(restored)} tables from {path.name}"
    )
    return "; ".join(report)
