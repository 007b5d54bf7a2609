"""Lifecycle automation: when a workspace entered its status, why a transition was
requested, and the scheduler's jobs with their last outcome."""

import peewee
from playhouse.migrate import migrate

VERSION = 5
DESCRIPTION = "workspace status time, transition reasons, scheduled jobs"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("workspaces", "status_since", peewee.DateTimeField(null=True)),
        migrator.add_column("transitions", "reason", peewee.TextField(null=True)),
    )
    db.execute_sql("UPDATE workspaces SET status_since = updated_at")

    class ScheduledJob(peewee.Model):
        name = peewee.CharField(max_length=32, unique=True)
        schedule = peewee.CharField(max_length=64)
        next_run_at = peewee.DateTimeField(null=True)
        last_started_at = peewee.DateTimeField(null=True)
        last_finished_at = peewee.DateTimeField(null=True)
        last_outcome = peewee.CharField(max_length=16, null=True)
        last_detail = peewee.TextField(null=True)
        runs = peewee.IntegerField()
        failures = peewee.IntegerField()

        class Meta:
            database = db
            table_name = "scheduled_jobs"

    db.create_tables([ScheduledJob])
