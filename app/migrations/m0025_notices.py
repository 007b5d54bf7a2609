"""Which warning an owner was last sent by email, so each is sent once."""

import peewee
from playhouse.migrate import migrate

VERSION = 25
DESCRIPTION = "the last warning mailed to a workspace's owner"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("workspaces", "notified", peewee.CharField(max_length=64, null=True))
    )
