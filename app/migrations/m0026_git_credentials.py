"""A person's git credentials: tokens per host and an SSH key pair, sealed."""

import peewee

VERSION = 26
DESCRIPTION = "a person's git credentials"


def upgrade(db, migrator):
    class User(peewee.Model):
        class Meta:
            database = db
            table_name = "users"

    class GitCredential(peewee.Model):
        user = peewee.ForeignKeyField(User, on_delete="CASCADE")
        kind = peewee.CharField(max_length=8)
        host = peewee.CharField(max_length=255, null=True)
        username = peewee.CharField(max_length=255, null=True)
        secret = peewee.TextField()
        public_key = peewee.TextField(null=True)
        fingerprint = peewee.CharField(max_length=64, null=True)
        created_at = peewee.DateTimeField()
        last_used_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "git_credentials"
            indexes = ((("user", "kind", "host"), True),)

    db.create_tables([GitCredential])
