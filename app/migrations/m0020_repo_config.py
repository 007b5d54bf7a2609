"""Which of a repository's devcontainer configs a workspace uses, when it has several
(.devcontainer/<name>/devcontainer.json)."""

import peewee
from playhouse.migrate import migrate

VERSION = 20
DESCRIPTION = "the chosen devcontainer config of a repository"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "repo_config", peewee.TextField(null=True)))
