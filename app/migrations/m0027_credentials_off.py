"""Why a person's git credentials are no longer offered in a workspace: someone else ran
something in it (or it was shared), so it is no longer its owner's alone."""

import peewee
from playhouse.migrate import migrate

VERSION = 27
DESCRIPTION = "why git credentials are off in a workspace"


def upgrade(db, migrator):
    migrate(migrator.add_column("workspaces", "credentials_off", peewee.TextField(null=True)))
    # Who used a workspace before was never kept: one made before this is not known to
    # be its owner's alone, so git credentials are offered only in new ones.
    db.execute_sql(
        f"UPDATE workspaces SET credentials_off = {db.param}",  # noqa: S608  (a placeholder)
        ("it was made before Berth kept track of who else used a workspace",),
    )
