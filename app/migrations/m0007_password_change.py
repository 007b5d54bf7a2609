"""Accounts whose password must be changed at the next login (a one-time password)."""

import peewee
from playhouse.migrate import migrate

VERSION = 7
DESCRIPTION = "one-time passwords"


def upgrade(db, migrator):
    migrate(
        migrator.add_column(
            "users", "password_change_required", peewee.BooleanField(default=False)
        ),
    )
