"""The model layer and its migrations, on SQLite and on PostgreSQL."""

import subprocess
import sys
from datetime import timedelta

import peewee
import pytest

from app import accounts, migrations
from app.db import database, make_database
from app.models import ALL_MODELS, ApiToken, User, utcnow


def _shape(db, table):
    columns = {c.name: c.null for c in db.get_columns(table)}
    unique = {tuple(i.columns) for i in db.get_indexes(table) if i.unique}
    return columns, unique


def _model_shape(model):
    columns = {f.column_name: f.null for f in model._meta.sorted_fields}
    unique = {(f.column_name,) for f in model._meta.sorted_fields if f.unique}
    return columns, unique


def test_migrated_schema_is_the_models_schema(instance):
    db = database.obj
    assert migrations.current_version(db) == migrations.LATEST
    for model in ALL_MODELS:
        columns, unique = _shape(db, model._meta.table_name)
        expected_columns, expected_unique = _model_shape(model)
        assert columns == expected_columns, model.__name__
        assert expected_unique <= unique, model.__name__


@pytest.mark.parametrize("start", range(1, migrations.LATEST))
def test_upgrade_from_an_older_schema_keeps_the_data(database_url, start):
    db = make_database(database_url)
    database.initialize(db)
    db.connect()
    try:
        assert migrations.upgrade(db, target=start)[-1].version == start
        # A user written by the older release, with the columns that release had.
        extra = ("", "") if start < 7 else (", password_change_required", ", false")
        if start >= 15:
            extra = (extra[0] + ", session_version", extra[1] + ", 0")
        db.execute_sql(
            f"INSERT INTO users (username, password_hash, role, created_at{extra[0]}) "  # noqa: S608  (constants)
            f"VALUES ('old-timer', NULL, 'admin', '2025-01-02 03:04:05'{extra[1]})"
        )
        if start >= 2:  # and a token of theirs: rows that refer to a user survive too
            scopes = ("", "") if start < 8 else (", scopes", ", 'workspaces:read'")
            columns = f"user_id, name, prefix, token_hash, created_at{scopes[0]}"
            db.execute_sql(
                f"INSERT INTO api_tokens ({columns}) "  # noqa: S608  (constants)
                "SELECT id, 'kept', 'berth_', 'hash-of-kept', '2025-01-02 03:04:05'"
                f"{scopes[1]} FROM users WHERE username = 'old-timer'"
            )
        applied = migrations.upgrade(db)
        assert [step.version for step in applied] == list(range(start + 1, migrations.LATEST + 1))
        assert migrations.upgrade(db) == []  # idempotent
        user = User.get(User.username == "old-timer")
        assert user.role == "admin" and user.created_at.year == 2025 and user.last_login_at is None
        if start >= 2:
            assert [t.name for t in ApiToken.select().where(ApiToken.user == user)] == ["kept"]
        row, _ = accounts.create_token(user, "after-upgrade")
        assert row.user.username == "old-timer"
    finally:
        db.close()


def test_a_newer_schema_is_refused(instance):
    db = database.obj
    db.execute_sql(
        "INSERT INTO berth_schema (version, description, applied_at) "
        "VALUES (999, 'from the future', '2030-01-01 00:00:00')"
    )
    with pytest.raises(migrations.SchemaTooNew, match="schema version 999"):
        migrations.upgrade(db)


def test_processes_starting_together_migrate_once(database_url, tmp_path):
    script = (
        "import sys; from app import migrations; from app.db import make_database\n"
        "db = make_database(sys.argv[1]); db.connect()\n"
        "print(len(migrations.upgrade(db)))\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, database_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    counts = sorted(int(run.communicate(timeout=60)[0]) for run in runs)
    assert sum(counts) == migrations.LATEST, counts
    db = make_database(database_url)
    with db.connection_context():
        assert migrations.current_version(db) == migrations.LATEST


def test_users(instance):
    admin = accounts.create_user("ada", "correct horse", "admin")
    assert admin.password_hash != "correct horse" and admin.is_admin
    with pytest.raises(accounts.AccountError, match="already exists"):
        accounts.create_user("ada", "another pass")
    with pytest.raises(accounts.AccountError, match="not allowed"):
        accounts.create_user("Ada Lovelace", "whatever1")
    with pytest.raises(accounts.AccountError, match="at least 8"):
        accounts.create_user("bob", "short")
    with pytest.raises(accounts.AccountError, match="role 'root' does not exist"):
        accounts.create_user("bob", "long enough", "root")
    assert User.select().count() == 1

    assert accounts.authenticate("ada", "correct horse").last_login_at is not None
    with pytest.raises(accounts.AccountError, match="Wrong username or password"):
        accounts.authenticate("ada", "wrong horse")
    with pytest.raises(accounts.AccountError, match="Wrong username or password"):
        accounts.authenticate("nobody", "correct horse")

    member = accounts.create_user("bob", "long enough")
    accounts.set_disabled(member, True, acting=admin)
    with pytest.raises(accounts.AccountError, match="disabled"):
        accounts.authenticate("bob", "long enough")
    with pytest.raises(accounts.AccountError, match="your own account"):
        accounts.set_disabled(admin, True, acting=admin)
    with pytest.raises(accounts.AccountError, match="last active admin"):
        accounts.set_disabled(admin, True)
    accounts.set_disabled(member, False)
    accounts.change_password(member, "long enough", "even longer")
    assert accounts.authenticate("bob", "even longer")
    with pytest.raises(accounts.AccountError, match="current password"):
        accounts.change_password(member, "long enough", "whatever1")


def test_tokens(instance):
    user = accounts.create_user("carol", "password1")
    row, plaintext = accounts.create_token(user, "laptop", timedelta(days=30))
    assert plaintext.startswith("berth_") and plaintext not in row.token_hash
    assert ApiToken.select().where(ApiToken.token_hash.contains(plaintext[6:])).count() == 0
    verified = accounts.verify_token(plaintext)
    assert verified.id == row.id and verified.user.username == "carol"
    assert verified.last_used_at is not None

    expired_row, expired = accounts.create_token(user, "old", timedelta(seconds=1))
    with pytest.raises(accounts.TokenRefused) as refusal:
        accounts.verify_token(expired, now=utcnow() + timedelta(seconds=5))
    assert refusal.value.reason == "token_expired"

    accounts.revoke_token(row)
    with pytest.raises(accounts.TokenRefused) as refusal:
        accounts.verify_token(plaintext)
    assert refusal.value.reason == "token_revoked"

    for bad, reason in [
        ("", "malformed_token"),
        ("berth_short", "malformed_token"),
        ("berth_" + "A" * 40, "invalid_token"),
    ]:
        with pytest.raises(accounts.TokenRefused) as refusal:
            accounts.verify_token(bad)
        assert refusal.value.reason == reason

    _, live = accounts.create_token(user, "live")
    accounts.set_disabled(user, True)
    with pytest.raises(accounts.TokenRefused) as refusal:
        accounts.verify_token(live)
    assert refusal.value.reason == "account_disabled"


def test_deleting_a_user_deletes_their_tokens(instance):
    user = accounts.create_user("dave", "password1")
    accounts.create_token(user, "x")
    user.delete_instance()
    assert ApiToken.select().count() == 0


def test_foreign_keys_are_enforced(instance):
    with pytest.raises(peewee.IntegrityError):
        ApiToken.create(user=12345, name="x", prefix="berth_x", token_hash="0" * 64)
