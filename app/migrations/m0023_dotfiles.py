"""A person's dotfiles repository, installed into each of their new workspaces."""

import peewee
from playhouse.migrate import migrate

VERSION = 23
DESCRIPTION = "a person's dotfiles repository"


def upgrade(db, migrator):
    migrate(migrator.add_column("users", "dotfiles_url", peewee.TextField(null=True)))
