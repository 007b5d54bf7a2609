"""Database backups through the real CLI on SQLite and real PostgreSQL: restored into a
fresh database they give identical rows; a database with data is only replaced with
--force (after a backup of it); a failed backup is recorded and removes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app import accounts, migrations
from app.backups import database as db_backups
from app.config import Settings
from app.db import database, make_database, open_database
from app.models import ScheduledJob
from app.scheduler import register, run_recorded
from app.workspaces import activity, service, templates
from app.workspaces import scheduled as jobs
from tests import services


def table_rows(url: str) -> dict[str, list[tuple]]:
    db = make_database(url)
    db.connect()
    try:
        return {
            name: sorted(
                (tuple(map(str, row)) for row in db.execute_sql(f'SELECT * FROM "{name}"')),  # noqa: S608
            )
            for name in sorted(db.get_tables())
        }
    finally:
        db.close()


def _restored_marks(url: str) -> list[str]:
    """The restore's mark on each workspace, then taken off so the rest compares."""
    db = make_database(url)
    db.connect()
    try:
        marks = [r[0] for r in db.execute_sql("SELECT credentials_off FROM workspaces")]
        db.execute_sql("UPDATE workspaces SET credentials_off = NULL")
        return marks
    finally:
        db.close()


def fill(settings: Settings) -> None:
    """Users, a token, workspaces with their jobs and history, activity: real rows."""
    with database.connection_context():
        templates.sync_builtin()
        ann = accounts.create_user("ann", "ann-password-1", "member")
        accounts.create_user("boss", "boss-password-1", "admin")
        accounts.create_token(ann, "laptop", None)
        for name in ("one", "two"):
            ws = service.create(ann, name, template_name="python", data_dir=settings.data_dir)
            activity.record(ws.id, "keepalive", "filled", force=True)


@pytest.fixture
def fresh_url(request, tmp_path, database_url):
    """An empty database of the same engine as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/fresh/berth.db"
    else:
        url = services.create_database(request.getfixturevalue("postgres_server"))
        yield url
        services.drop_database(url)


def test_a_backup_restores_into_a_fresh_database_with_identical_rows(instance, fresh_url, tmp_path):
    fill(instance)
    env = {"BERTH_DATA_DIR": str(instance.data_dir), "BERTH_DATABASE_URL": instance.database_url}
    made = services.berth("backup", "now", env=env)
    assert "backup written: berth-" in made.stderr
    # The rows as the backup saw them: every table but the backup job's own record, whose
    # run finished (and was written down) after the dump.
    at_backup = table_rows(instance.database_url)
    del at_backup["scheduled_jobs"]
    (backup,) = db_backups.list_backups(instance)
    assert backup.path.suffix == (".sqlite3" if instance.is_sqlite else ".pgdump")
    assert backup.id in services.berth("backup", "list", env=env).stdout

    target = {"BERTH_DATA_DIR": str(tmp_path / "restored"), "BERTH_DATABASE_URL": fresh_url}
    restored = services.berth("restore", str(backup.path), env=target)
    assert "restored" in restored.stderr
    # Each workspace restored says so: its volumes may hold what others left since the
    # dump, so it offers its owner's git credentials no more (app.workspaces.strangers).
    assert _restored_marks(fresh_url) == [f"the database was restored from {backup.path.name}"] * 2
    rows = table_rows(fresh_url)
    job = rows.pop("scheduled_jobs")
    assert rows == at_backup
    assert len(rows["users"]) == 2 and len(rows["workspaces"]) == 2
    assert [r[1] for r in job] == ["backup"]

    # The restored instance opens and serves: its users log in.
    again = services.berth("admin", "list-users", env=target)
    assert "ann" in again.stdout and "boss" in again.stdout

    # A database with data is not replaced without --force; with it, after a backup.
    refused = services.berth("restore", str(backup.path), env=target, check=False)
    assert refused.returncode == 1
    assert "already holds data" in refused.stderr and "--force" in refused.stderr
    forced = services.berth("restore", str(backup.path), "--force", env=target)
    assert "the data it replaced is saved in" in forced.stderr
    saved = Path(forced.stderr.split("saved in ")[1].strip())
    assert saved.is_file() and saved.stat().st_size > 0
    _restored_marks(fresh_url)
    rows = table_rows(fresh_url)
    del rows["scheduled_jobs"]
    assert rows["users"] == at_backup["users"]
    assert rows["workspaces"] == at_backup["workspaces"]


def test_restore_refuses_the_wrong_kind_of_file(instance, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    env = {"BERTH_DATA_DIR": str(tmp_path / "other"), "BERTH_DATABASE_URL": instance.database_url}
    done = services.berth("restore", str(junk), env=env, check=False)
    assert done.returncode == 1
    assert "neither a SQLite backup nor a pg_dump custom-format file" in done.stderr


def test_a_failed_backup_is_recorded_and_removes_nothing(instance, monkeypatch):
    with database.connection_context():
        register("backup", "cron 0 3 * * * (UTC)")
        assert run_recorded("backup", lambda: jobs.nightly_backup(instance))
        good = db_backups.list_backups(instance)
        # Break the next backup: the SQLite file vanishes, or pg_dump is not to be found.
        if instance.is_sqlite:
            broken = Settings.load(
                {"data_dir": str(instance.data_dir), "database_url": "sqlite:////nonexistent/x.db"},
                environ={},
            )
        else:
            monkeypatch.setenv("PATH", "/nonexistent")
            broken = instance
        assert run_recorded("backup", lambda: jobs.nightly_backup(broken)) is None
        row = ScheduledJob.get(ScheduledJob.name == "backup")
    assert row.last_outcome == "failed" and row.runs == 2 and row.failures == 1
    assert "does not exist" in row.last_detail or "pg_dump is not installed" in row.last_detail
    assert db_backups.list_backups(instance) == good
    assert not list(db_backups.folder(instance).glob("*.partial"))


def test_a_second_worker_on_the_same_postgresql_does_not_start(
    postgres_url, tmp_path, docker_client, base_image
):
    """Two data dirs, one database: the scheduler must still run its jobs once."""
    import subprocess
    import sys

    from tests.services import wait_until

    settings = Settings.load({"data_dir": str(tmp_path / "a"), "database_url": postgres_url}, {})
    settings.ensure_data_dir()
    db = open_database(settings)
    with db.connection_context():
        migrations.upgrade(db)

    def env(folder: str) -> dict:
        return {
            **os.environ,
            "BERTH_DATA_DIR": str(tmp_path / folder),
            "BERTH_DATABASE_URL": postgres_url,
        }

    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"], env=env("a"), stdout=out, stderr=out
        )
    try:
        wait_until(lambda: "worker ready" in log.read_text(), 60, what="the first worker")
        second = subprocess.run(
            [sys.executable, "-m", "app", "worker"],
            env=env("b"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert "another berth worker holds this database's worker lock" in second.stderr
    finally:
        first.terminate()
        assert first.wait(30) == 0
    with db.connection_context():
        assert ScheduledJob.select().where(ScheduledJob.name == "lifecycle").exists()
