"""A workspace's own egress allowlist (on top of its template's)."""

import peewee
from playhouse.migrate import migrate

VERSION = 13
DESCRIPTION = "egress allowlists"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "egress_allow", peewee.TextField(null=True)))
