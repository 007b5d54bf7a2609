"""The tamper-evident audit log."""

import peewee

VERSION = 9
DESCRIPTION = "audit log"


def upgrade(db, migrator):
    class AuditEvent(peewee.Model):
        seq = peewee.BigIntegerField(unique=True)
        at = peewee.DateTimeField(index=True)
        actor = peewee.CharField(max_length=64, index=True)
        source_ip = peewee.CharField(max_length=64, null=True)
        action = peewee.CharField(max_length=64, index=True)
        target = peewee.CharField(max_length=160, null=True, index=True)
        outcome = peewee.CharField(max_length=16)
        detail = peewee.TextField()
        prev_hash = peewee.CharField(max_length=64)
        hash = peewee.CharField(max_length=64)

        class Meta:
            database = db
            table_name = "audit_events"

    db.create_tables([AuditEvent])
