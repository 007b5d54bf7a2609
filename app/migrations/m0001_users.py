"""Local user accounts with hashed passwords and a role."""

import peewee

VERSION = 1
DESCRIPTION = "users"


def upgrade(db, migrator):
    class User(peewee.Model):
        username = peewee.CharField(max_length=32, unique=True)
        password_hash = peewee.CharField(max_length=255, null=True)
        role = peewee.CharField(max_length=16, default="member")
        created_at = peewee.DateTimeField()
        disabled_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "users"

    db.create_tables([User])
