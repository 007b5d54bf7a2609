"""API tokens (stored hashed) and the time of each user's last login."""

import peewee
from playhouse.migrate import migrate

VERSION = 2
DESCRIPTION = "api tokens, users.last_login_at"


def upgrade(db, migrator):
    migrate(migrator.add_column("users", "last_login_at", peewee.DateTimeField(null=True)))

    class User(peewee.Model):
        class Meta:
            database = db
            table_name = "users"

    class ApiToken(peewee.Model):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        name = peewee.CharField(max_length=64)
        prefix = peewee.CharField(max_length=16)
        token_hash = peewee.CharField(max_length=64, unique=True)
        created_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField(null=True)
        revoked_at = peewee.DateTimeField(null=True)
        last_used_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "api_tokens"

    db.create_tables([ApiToken])
