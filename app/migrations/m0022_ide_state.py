"""The browser IDE starts on its first open and stops when idle: what Berth last did
with it, per container."""

import peewee
from playhouse.migrate import migrate

VERSION = 22
DESCRIPTION = "the state of a workspace's browser IDE"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "ide", peewee.TextField(null=True)))
