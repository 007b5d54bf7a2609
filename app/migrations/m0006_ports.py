"""Ports of a workspace reachable in the browser (forwardPorts and ports people open)."""

import peewee

VERSION = 6
DESCRIPTION = "workspace ports"


def upgrade(db, migrator):
    class Workspace(peewee.Model):
        class Meta:
            database = db
            table_name = "workspaces"

    class WorkspacePort(peewee.Model):
        workspace = peewee.ForeignKeyField(Workspace, on_delete="CASCADE")
        port = peewee.IntegerField()
        label = peewee.CharField(max_length=64, null=True)
        source = peewee.CharField(max_length=16)
        shared = peewee.BooleanField()
        created_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "workspace_ports"
            indexes = ((("workspace", "port"), True),)

    db.create_tables([WorkspacePort])
