"""Schema migrations: numbered steps that bring any older database up to date.

Each step is a module with ``VERSION``, ``DESCRIPTION`` and ``upgrade(db, migrator)``. A
step describes tables as they were at that version (never through ``app.models``, which
moves on), so replaying the steps on an empty database always gives the same result.
Steps run under an exclusive lock, so processes that start together migrate once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import peewee
from playhouse.migrate import SchemaMigrator

from app.migrations import (
    m0001_users,
    m0002_api_tokens,
    m0003_workspaces,
    m0004_ssh,
    m0005_lifecycle,
    m0006_ports,
    m0007_password_change,
    m0008_groups_sharing_scopes,
    m0009_audit,
    m0010_quotas,
    m0011_sso,
    m0012_costs,
    m0013_egress,
    m0014_recordings,
    m0015_security,
    m0016_jobs,
    m0017_engine_start,
    m0018_placement,
    m0019_stages,
    m0020_repo_config,
    m0021_person_env,
    m0022_ide_state,
    m0023_dotfiles,
    m0024_repo_choices,
    m0025_notices,
    m0026_git_credentials,
    m0027_credentials_off,
    m0028_containers,
)
from app.models import utcnow

STEPS = [
    m0001_users,
    m0002_api_tokens,
    m0003_workspaces,
    m0004_ssh,
    m0005_lifecycle,
    m0006_ports,
    m0007_password_change,
    m0008_groups_sharing_scopes,
    m0009_audit,
    m0010_quotas,
    m0011_sso,
    m0012_costs,
    m0013_egress,
    m0014_recordings,
    m0015_security,
    m0016_jobs,
    m0017_engine_start,
    m0018_placement,
    m0019_stages,
    m0020_repo_config,
    m0021_person_env,
    m0022_ide_state,
    m0023_dotfiles,
    m0024_repo_choices,
    m0025_notices,
    m0026_git_credentials,
    m0027_credentials_off,
    m0028_containers,
]
LATEST = STEPS[-1].VERSION
_PG_LOCK_KEY = 0x6265727468  # "berth": one advisory lock id shared by every Berth process


class SchemaTooNew(Exception):
    """The database was migrated by a newer Berth than this one."""


@dataclass(frozen=True)
class Applied:
    version: int
    description: str


def _schema_table(db: peewee.Database):
    class SchemaVersion(peewee.Model):
        version = peewee.IntegerField(primary_key=True)
        description = peewee.CharField(max_length=200)
        applied_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "berth_schema"

    return SchemaVersion


def current_version(db: peewee.Database) -> int:
    """The schema version the database is at (0 for an empty database)."""
    if not db.table_exists("berth_schema"):
        return 0
    model = _schema_table(db)
    return model.select(peewee.fn.MAX(model.version)).scalar() or 0


@contextmanager
def _exclusive(db: peewee.Database):
    if isinstance(db, peewee.SqliteDatabase):
        # IMMEDIATE takes the write lock at BEGIN, so a second process waits here.
        with db.atomic("IMMEDIATE"):
            yield
        return
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        yield


def upgrade(
    db: peewee.Database,
    target: int | None = None,
    on_step: Callable[[Applied], None] | None = None,
) -> list[Applied]:
    """Apply every step above the current version up to ``target`` (default: latest)."""
    target = LATEST if target is None else target
    found = current_version(db)
    if found > LATEST:
        raise SchemaTooNew(
            f"the database is at schema version {found}, newer than this Berth knows "
            f"({LATEST}); upgrade Berth instead of running an older release against it"
        )
    schema = _schema_table(db)
    # Under the lock: CREATE TABLE IF NOT EXISTS races on PostgreSQL (two processes can
    # both pass the check and one fails on the catalog's unique index).
    with _exclusive(db):
        db.create_tables([schema], safe=True)
    migrator = SchemaMigrator.from_database(db)
    sqlite = isinstance(db, peewee.SqliteDatabase)
    if sqlite:
        # Adding a NOT NULL column rebuilds the table on SQLite (copy, drop, rename); with
        # foreign keys on, the drop would delete every row that refers to it (cascades).
        # The pragma only takes effect outside a transaction, so it is set here.
        db.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        return _apply(db, schema, migrator, target, on_step)
    finally:
        if sqlite:
            db.execute_sql("PRAGMA foreign_keys = ON")


def _apply(db, schema, migrator, target: int, on_step) -> list[Applied]:
    applied = []
    for step in STEPS:
        if target < step.VERSION:
            break
        with _exclusive(db):
            if current_version(db) >= step.VERSION:
                continue
            step.upgrade(db, migrator)
            schema.create(version=step.VERSION, description=step.DESCRIPTION, applied_at=utcnow())
        done = Applied(step.VERSION, step.DESCRIPTION)
        applied.append(done)
        if on_step:
            on_step(done)
    return applied
