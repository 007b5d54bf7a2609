"""How many containers a workspace runs: one, or one per started service of a compose
config. Quotas and costs count each with the template's CPUs and memory."""

import peewee
from playhouse.migrate import migrate

VERSION = 28
DESCRIPTION = "containers per workspace (compose services count for quotas and costs)"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "containers", peewee.IntegerField(default=1)))
