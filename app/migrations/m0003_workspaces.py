"""Templates, workspaces, their transitions (jobs) and state history."""

import peewee

VERSION = 3
DESCRIPTION = "templates, workspaces, transitions, state changes"


def upgrade(db, migrator):
    class User(peewee.Model):
        class Meta:
            database = db
            table_name = "users"

    class Template(peewee.Model):
        name = peewee.CharField(max_length=64, unique=True)
        description = peewee.TextField()
        source_kind = peewee.CharField(max_length=16)
        source = peewee.TextField()
        git_ref = peewee.CharField(max_length=255, null=True)
        git_path = peewee.CharField(max_length=255, null=True)
        profile = peewee.CharField(max_length=16)
        parameters = peewee.TextField()
        limits = peewee.TextField()
        approvals = peewee.TextField()
        enabled = peewee.BooleanField()
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "templates"

    class Workspace(peewee.Model):
        owner = peewee.ForeignKeyField(User, on_delete="CASCADE")
        name = peewee.CharField(max_length=63)
        live_name = peewee.CharField(max_length=63, null=True)
        template = peewee.ForeignKeyField(Template, null=True, on_delete="SET NULL")
        repo_url = peewee.TextField(null=True)
        repo_ref = peewee.CharField(max_length=255, null=True)
        parameters = peewee.TextField()
        status = peewee.CharField(max_length=16)
        error = peewee.TextField(null=True)
        image = peewee.CharField(max_length=255, null=True)
        container_id = peewee.CharField(max_length=80, null=True)
        keep_volumes = peewee.BooleanField()
        ttl_expires_at = peewee.DateTimeField(null=True)
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "workspaces"
            indexes = ((("owner", "live_name"), True),)

    class Transition(peewee.Model):
        workspace = peewee.ForeignKeyField(Workspace, on_delete="CASCADE")
        kind = peewee.CharField(max_length=16)
        status = peewee.CharField(max_length=16)
        cause = peewee.CharField(max_length=16)
        actor = peewee.CharField(max_length=64, null=True)
        options = peewee.TextField()
        error = peewee.TextField(null=True)
        log = peewee.TextField()
        created_at = peewee.DateTimeField()
        started_at = peewee.DateTimeField(null=True)
        finished_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "transitions"

    class StateChange(peewee.Model):
        workspace = peewee.ForeignKeyField(Workspace, on_delete="CASCADE")
        transition = peewee.ForeignKeyField(Transition, null=True, on_delete="SET NULL")
        from_status = peewee.CharField(max_length=16, null=True)
        to_status = peewee.CharField(max_length=16)
        cause = peewee.CharField(max_length=16)
        actor = peewee.CharField(max_length=64, null=True)
        message = peewee.TextField(null=True)
        at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "state_changes"

    db.create_tables([Template, Workspace, Transition, StateChange])
