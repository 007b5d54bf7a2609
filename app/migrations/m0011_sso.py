"""Accounts linked to a single sign-on identity, and their email."""

import peewee
from playhouse.migrate import migrate

VERSION = 11
DESCRIPTION = "single sign-on identities"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("users", "email", peewee.CharField(max_length=254, null=True)),
        migrator.add_column("users", "sso_subject", peewee.CharField(max_length=255, null=True)),
        migrator.add_index("users", ("email",), unique=True),
        migrator.add_index("users", ("sso_subject",), unique=True),
    )
