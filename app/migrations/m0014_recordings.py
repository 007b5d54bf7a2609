"""Recorded sessions of workspaces whose template asks for it."""

import peewee

VERSION = 14
DESCRIPTION = "session recordings"


def upgrade(db, migrator):
    class Workspace(peewee.Model):
        class Meta:
            database = db
            table_name = "workspaces"

    class Recording(peewee.Model):
        workspace = peewee.ForeignKeyField(Workspace, on_delete="CASCADE")
        kind = peewee.CharField(max_length=16)
        actor = peewee.CharField(max_length=64)
        title = peewee.TextField()
        path = peewee.TextField()
        size = peewee.BigIntegerField()
        exit_code = peewee.IntegerField(null=True)
        started_at = peewee.DateTimeField(index=True)
        ended_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "recordings"

    db.create_tables([Recording])
