"""Prices per template and monthly budgets per group."""

import peewee
from playhouse.migrate import migrate

VERSION = 12
DESCRIPTION = "prices and budgets"


def upgrade(db, migrator):
    class Group(peewee.Model):
        class Meta:
            database = db
            table_name = "groups"

    class Budget(peewee.Model):
        group = peewee.ForeignKeyField(Group, unique=True, on_delete="CASCADE")
        monthly = peewee.FloatField()
        hard_stop = peewee.BooleanField()
        alerted_month = peewee.CharField(max_length=7, null=True)
        stopped_month = peewee.CharField(max_length=7, null=True)
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "budgets"

    db.create_tables([Budget])
    migrate(migrator.add_column("templates", "pricing", peewee.TextField(default="{}")))
