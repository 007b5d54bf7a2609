"""SSH public keys, and per-workspace activity by source (for the idle auto-stop)."""

import peewee

VERSION = 4
DESCRIPTION = "ssh keys, workspace activity"


def upgrade(db, migrator):
    class User(peewee.Model):
        class Meta:
            database = db
            table_name = "users"

    class Workspace(peewee.Model):
        class Meta:
            database = db
            table_name = "workspaces"

    class SshKey(peewee.Model):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        name = peewee.CharField(max_length=64)
        key_type = peewee.CharField(max_length=64)
        public_key = peewee.TextField()
        fingerprint = peewee.CharField(max_length=64, unique=True)
        created_at = peewee.DateTimeField()
        last_used_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "ssh_keys"

    class Activity(peewee.Model):
        workspace = peewee.ForeignKeyField(Workspace, on_delete="CASCADE")
        source = peewee.CharField(max_length=16)
        last_at = peewee.DateTimeField()
        detail = peewee.TextField(null=True)
        open_sessions = peewee.IntegerField()

        class Meta:
            database = db
            table_name = "activity"
            indexes = ((("workspace", "source"), True),)

    db.create_tables([SshKey, Activity])
