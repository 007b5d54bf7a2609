"""How many times a worker took up each job (one that killed the worker twice is failed,
not tried forever), and indexes for what the worker and the sweep ask every few seconds."""

import peewee
from playhouse.migrate import migrate

VERSION = 16
DESCRIPTION = "job attempts, indexes on polled statuses"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("transitions", "attempts", peewee.IntegerField(default=0)),
        migrator.add_index("transitions", ("status",)),
        migrator.add_index("workspaces", ("status",)),
    )
