"""Which warning an owner was last sent by email, so each is sent once; a job's own
warnings (Berth's, never a line some build or hook printed)."""

import peewee
from playhouse.migrate import migrate

VERSION = 25
DESCRIPTION = "the last warning mailed to a workspace's owner; a job's warnings"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("workspaces", "notified", peewee.CharField(max_length=64, null=True)),
        migrator.add_column("transitions", "warnings", peewee.TextField(default="[]")),
    )
