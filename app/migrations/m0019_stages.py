"""How long each stage of a job took (source, build, volumes, create, start, hooks,
IDE...), so a slow create says where its time went."""

import peewee
from playhouse.migrate import migrate

VERSION = 19
DESCRIPTION = "how long each stage of a job took"


def upgrade(db, migrator):
    migrate(migrator.add_column("transitions", "stages", peewee.TextField(default="[]")))
