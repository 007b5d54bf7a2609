"""Where each started workspace is reached (its address, the runtime host, its user and
folder), recorded by the worker so the web tier and the SSH gateway never ask the
engine themselves."""

import peewee
from playhouse.migrate import migrate

VERSION = 18
DESCRIPTION = "where each started workspace is reached"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("workspaces", "address", peewee.CharField(max_length=64, null=True)),
        migrator.add_column("workspaces", "runtime_host", peewee.TextField(null=True)),
        # Text: what a config names (remoteUser) has no length limit of Berth's own.
        migrator.add_column("workspaces", "remote_user", peewee.TextField(null=True)),
        migrator.add_column("workspaces", "workspace_folder", peewee.TextField(null=True)),
    )
