"""Quotas per person and per group."""

import peewee

VERSION = 10
DESCRIPTION = "quotas"


def upgrade(db, migrator):
    class User(peewee.Model):
        class Meta:
            database = db
            table_name = "users"

    class Group(peewee.Model):
        class Meta:
            database = db
            table_name = "groups"

    class Quota(peewee.Model):
        user = peewee.ForeignKeyField(User, null=True, unique=True, on_delete="CASCADE")
        group = peewee.ForeignKeyField(Group, null=True, unique=True, on_delete="CASCADE")
        max_workspaces = peewee.IntegerField(null=True)
        max_running = peewee.IntegerField(null=True)
        max_cpu = peewee.FloatField(null=True)
        max_memory_mb = peewee.IntegerField(null=True)
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "quotas"

    db.create_tables([Quota])
