"""When the engine last started each workspace's container, as the engine wrote it, for
reconcile to tell a start by Berth from one by the engine (an engine restart)."""

import peewee
from playhouse.migrate import migrate

VERSION = 17
DESCRIPTION = "the engine's start time of each workspace's container"


def upgrade(db, migrator):
    migrate(
        migrator.add_column(
            "workspaces", "engine_started_at", peewee.CharField(max_length=40, null=True)
        ),
    )
