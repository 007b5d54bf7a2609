"""Sessions that logout and password changes end everywhere; sandbox tokens that Berth
can give again without storing them; the ``account`` scope for tokens that had every
(workspace) scope."""

import peewee
from playhouse.migrate import migrate

VERSION = 15
DESCRIPTION = "session versions, derived sandbox tokens, the account scope"

_WORKSPACE_SCOPES = "workspaces:read workspaces:write workspaces:exec"


def upgrade(db, migrator):
    migrate(
        migrator.add_column("users", "session_version", peewee.IntegerField(default=0)),
        migrator.add_column("api_tokens", "nonce", peewee.CharField(max_length=64, null=True)),
    )
    # A token made with every scope there was (or every workspace scope, a member's
    # full token) stood for "all its user may do": it keeps managing its user's keys and
    # tokens, which now take a scope of their own.
    mark = db.param
    for old, new in (
        (f"{_WORKSPACE_SCOPES} admin", f"{_WORKSPACE_SCOPES} account admin"),
        (_WORKSPACE_SCOPES, f"{_WORKSPACE_SCOPES} account"),
    ):
        db.execute_sql(
            f"UPDATE api_tokens SET scopes = {mark} WHERE scopes = {mark}",  # noqa: S608
            (new, old),
        )
