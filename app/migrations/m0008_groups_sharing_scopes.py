"""Groups (teams), workspace sharing with people and groups, and scoped API tokens."""

import peewee
from playhouse.migrate import migrate

VERSION = 8
DESCRIPTION = "groups, workspace sharing, token scopes"


def upgrade(db, migrator):
    class User(peewee.Model):
        class Meta:
            database = db
            table_name = "users"

    class Workspace(peewee.Model):
        class Meta:
            database = db
            table_name = "workspaces"

    class Group(peewee.Model):
        name = peewee.CharField(max_length=64, unique=True)
        description = peewee.TextField()
        created_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "groups"

    class GroupMember(peewee.Model):
        group = peewee.ForeignKeyField(Group, on_delete="CASCADE")
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        created_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "group_members"
            indexes = ((("group", "user"), True),)

    class WorkspaceShare(peewee.Model):
        workspace = peewee.ForeignKeyField(Workspace, on_delete="CASCADE")
        user = peewee.ForeignKeyField(User, null=True, on_delete="CASCADE")
        group = peewee.ForeignKeyField(Group, null=True, on_delete="CASCADE")
        created_by = peewee.CharField(max_length=64)
        created_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "workspace_shares"
            indexes = ((("workspace", "user", "group"), True),)

    db.create_tables([Group, GroupMember, WorkspaceShare])
    migrate(
        # Tokens made before scopes existed keep the access they had: every scope.
        migrator.add_column(
            "api_tokens",
            "scopes",
            peewee.CharField(
                max_length=255, default="workspaces:read workspaces:write workspaces:exec admin"
            ),
        ),
        migrator.add_column(
            "api_tokens",
            "workspace_id",
            peewee.ForeignKeyField(Workspace, null=True, field=Workspace.id, on_delete="CASCADE"),
        ),
    )
