"""The current shape of Berth's tables.

The schema itself is owned by ``app.migrations``: a change here goes with a new migration
that brings existing databases to the same shape (tests compare the two).
"""

from datetime import UTC, datetime

import peewee

from app.db import database

ROLES = ("admin", "member")


def utcnow() -> datetime:
    """Naive UTC, the one form stored in every timestamp column on both engines."""
    return datetime.now(UTC).replace(tzinfo=None)


class BaseModel(peewee.Model):
    class Meta:
        database = database


class User(BaseModel):
    username = peewee.CharField(max_length=32, unique=True)
    password_hash = peewee.CharField(max_length=255, null=True)
    role = peewee.CharField(max_length=16, default="member")
    created_at = peewee.DateTimeField(default=utcnow)
    disabled_at = peewee.DateTimeField(null=True)
    last_login_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "users"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None


class ApiToken(BaseModel):
    user = peewee.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    prefix = peewee.CharField(max_length=16)
    token_hash = peewee.CharField(max_length=64, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "api_tokens"

    def status(self, now: datetime | None = None) -> str:
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


ALL_MODELS = [User, ApiToken]
