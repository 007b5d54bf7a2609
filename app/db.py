"""The database handle: SQLite for the embedded default, PostgreSQL in production.

Models bind to ``database``, a proxy that ``open_database`` points at the real thing, so
one set of models serves both engines.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import peewee

from app.config import ConfigError, Settings
from app.messages import first_line

database = peewee.DatabaseProxy()
# The audit chain's key file of the database this process opened (app.audit reads it).
audit_key_file: Path | None = None
credentials_key_file: Path | None = None


def make_database(url: str) -> peewee.Database:
    """Return an unconnected peewee database for a ``sqlite:///`` or ``postgresql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # busy_timeout makes a writer wait for another process's write instead of failing.
        # WAL (readers beside the single writer) is a property of the file, set once in
        # open_database: asking for it at every connect may write, which fails on a full
        # disk where reads would still work.
        return peewee.SqliteDatabase(parts.path, pragmas={"foreign_keys": 1, "busy_timeout": 10000})
    return peewee.PostgresqlDatabase(
        unquote(parts.path.lstrip("/")),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname,
        port=parts.port or 5432,
    )


def write_transaction():
    """A transaction that will write: on SQLite it takes the write lock at BEGIN, so a
    read-then-write cannot fail with "database is locked" when another process writes;
    it waits (busy_timeout) instead."""
    if isinstance(database.obj, peewee.SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()


def open_database(settings: Settings) -> peewee.Database:
    """Point the model proxy at the instance's database and check it answers."""
    db = make_database(settings.database_url)
    try:
        db.connect()
        if isinstance(db, peewee.SqliteDatabase) and db.journal_mode != "wal":
            # Several processes (web, worker, ssh) share the file.
            db.journal_mode = "wal"
    except peewee.OperationalError as exc:
        raise ConfigError(
            "BERTH_DATABASE_URL", f"cannot connect to the database: {first_line(exc)}"
        ) from None
    db.close()
    if isinstance(db, peewee.SqliteDatabase):
        _owner_only(db.database)
    database.initialize(db)
    # Every process opens its database here: the audit chain's key is beside it, and so
    # is the key that seals git credentials (app.credentials.vault).
    global audit_key_file, credentials_key_file
    audit_key_file = settings.data_dir / "audit_key"
    credentials_key_file = settings.data_dir / "credentials_key"
    return db


def _owner_only(path: str) -> None:
    """The SQLite file and its WAL and shared-memory files, readable by Berth's user only."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


@contextmanager
def short_connection():
    """A connection for this block only, unless the thread already has one: for threads
    that come and go (SSH sessions) and would otherwise each keep a connection open."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield
    finally:
        if opened:
            database.close()
