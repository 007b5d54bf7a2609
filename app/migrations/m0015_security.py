"""Sessions that logout and password changes end everywhere; sandbox tokens that Berth
can give again without storing them; the ``account`` scope for tokens that had every scope."""

import peewee
from playhouse.migrate import migrate

VERSION = 15
DESCRIPTION = "session versions, derived sandbox tokens, the account scope"

_EVERY_OLD_SCOPE = "workspaces:read workspaces:write workspaces:exec admin"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("users", "session_version", peewee.IntegerField(default=0)),
        migrator.add_column("api_tokens", "nonce", peewee.CharField(max_length=64, null=True)),
    )
    # A token made with every scope there was stood for "all its user may do": it keeps
    # managing its user's keys and tokens, which now take a scope of their own.
    mark = db.param
    db.execute_sql(
        f"UPDATE api_tokens SET scopes = {mark} WHERE scopes = {mark}",  # noqa: S608
        ("workspaces:read workspaces:write workspaces:exec account admin", _EVERY_OLD_SCOPE),
    )
