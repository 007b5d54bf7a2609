"""Why a person's git credentials are no longer offered in a workspace: someone else ran
something in it (or it was shared), so it is no longer its owner's alone."""

import peewee
from playhouse.migrate import migrate

VERSION = 27
DESCRIPTION = "why git credentials are off in a workspace"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "credentials_off", peewee.TextField(null=True)))
