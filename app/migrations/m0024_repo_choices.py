"""The configs a repository offers when it has several and none was chosen."""

import peewee
from playhouse.migrate import migrate

VERSION = 24
DESCRIPTION = "a repository's configs to choose from"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "repo_choices", peewee.TextField(null=True)))
