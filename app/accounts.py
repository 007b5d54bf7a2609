"""Accounts and API tokens: the rules, independent of the web layer and the CLI.

Every function raises ``AccountError`` with a message meant for the person who asked.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from werkzeug.security import check_password_hash, generate_password_hash

from app import audit
from app.durations import format_duration
from app.models import ROLES, TOKEN_SCOPES, ApiToken, User, Workspace, utcnow

USERNAME_RULE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MIN_PASSWORD_LENGTH = 8
TOKEN_PREFIX = "berth_"  # noqa: S105  (a marker, not a secret)
TOKEN_USE_GAP = timedelta(minutes=1)
_TOKEN_SHAPE = re.compile(r"^berth_[A-Za-z0-9_-]{40,64}$")
# A hash to compare against when the user does not exist, so a login for an unknown
# name costs as much time as one with a wrong password.
_DUMMY_HASH = generate_password_hash("berth-timing-equaliser")


class AccountError(Exception):
    """A request about accounts or tokens was refused; the message says why."""


class TokenRefused(AccountError):
    """A bearer token did not authenticate; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def validate_username(username: str) -> str:
    name = (username or "").strip()
    if not 2 <= len(name) <= 32 or not USERNAME_RULE.match(name):
        raise AccountError(
            f"username {username!r} is not allowed: use 2 to 32 lowercase letters, digits "
            "and single hyphens, starting with a letter"
        )
    return name


def validate_password(password: str) -> str:
    if password is None or len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return password


def validate_email(email: str | None) -> str | None:
    if not email:
        return None
    cleaned = email.strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", cleaned) or len(cleaned) > 254:
        raise AccountError(f"{email!r} is not an email address")
    return cleaned


def set_email(user: User, email: str | None) -> None:
    """The address single sign-on links this account by (a verified one from the
    provider); unique across accounts."""
    cleaned = validate_email(email)
    if cleaned and User.select().where((User.email == cleaned) & (User.id != user.id)).exists():
        raise AccountError(f"another account already has the email {cleaned}")
    user.email = cleaned
    user.save(only=[User.email])


def create_user(
    username: str,
    password: str | None,
    role: str = "member",
    one_time: bool = False,
    email: str | None = None,
) -> User:
    """Create a local account; ``password=None`` makes one that cannot log in by password;
    ``one_time`` makes its first login choose a new password."""
    name = validate_username(username)
    if role not in ROLES:
        raise AccountError(f"role {role!r} does not exist; choose one of {', '.join(ROLES)}")
    if User.select().where(User.username == name).exists():
        raise AccountError(f"a user named {name!r} already exists")
    password_hash = generate_password_hash(validate_password(password)) if password else None
    email = validate_email(email)
    if email and User.select().where(User.email == email).exists():
        raise AccountError(f"another account already has the email {email}")
    return User.create(
        email=email,
        username=name,
        password_hash=password_hash,
        role=role,
        password_change_required=one_time and password is not None,
    )


def find_user(username: str) -> User:
    user = User.get_or_none(User.username == (username or "").strip().lower())
    if user is None:
        raise AccountError(f"there is no user named {username!r}")
    return user


def authenticate(username: str, password: str) -> User:
    """Return the user these credentials belong to, or raise AccountError saying why not."""
    user = User.get_or_none(User.username == (username or "").strip().lower())
    stored = user.password_hash if user and user.password_hash else _DUMMY_HASH
    if not check_password_hash(stored, password or "") or user is None or not user.password_hash:
        raise AccountError("Wrong username or password.")
    if user.is_disabled:
        raise AccountError("This account is disabled. Ask an administrator to re-enable it.")
    user.last_login_at = utcnow()
    user.save(only=[User.last_login_at])
    return user


def set_password(user: User, password: str, one_time: bool = False) -> None:
    """Set the password; ``one_time`` makes the next login choose a new one first."""
    user.password_hash = generate_password_hash(validate_password(password))
    user.password_change_required = one_time
    user.save(only=[User.password_hash, User.password_change_required])
    end_sessions(user)


def end_sessions(user: User) -> None:
    """Sign the person out everywhere: every session (and IDE cookie) signed before
    carries the old version and is refused from now on."""
    User.update(session_version=User.session_version + 1).where(User.id == user.id).execute()
    user.session_version = User.get_by_id(user.id).session_version


def one_time_password() -> str:
    """A random password to hand over once (the account must replace it at login)."""
    return secrets.token_urlsafe(12)


def change_password(user: User, current: str, new: str) -> None:
    if not user.password_hash or not check_password_hash(user.password_hash, current or ""):
        raise AccountError("The current password is not right.")
    set_password(user, new)


def set_disabled(user: User, disabled: bool, acting: User | None = None) -> None:
    if disabled and acting is not None and acting.id == user.id:
        raise AccountError("You cannot disable your own account.")
    if disabled and user.is_admin and not user.is_disabled:
        active_admins = (
            User.select().where((User.role == "admin") & User.disabled_at.is_null()).count()
        )
        if active_admins <= 1:
            raise AccountError(f"{user.username} is the last active admin and cannot be disabled.")
    user.disabled_at = utcnow() if disabled else None
    user.save(only=[User.disabled_at])


def check_role(role) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r} does not exist; choose one of {', '.join(ROLES)}")
    return role


def set_role(user: User, role: str, acting: User | None = None) -> None:
    check_role(role)
    if user.is_admin and role != "admin" and not user.is_disabled:
        active_admins = (
            User.select().where((User.role == "admin") & User.disabled_at.is_null()).count()
        )
        if active_admins <= 1:
            raise AccountError(f"{user.username} is the last active admin and must stay admin.")
    user.role = role
    user.save(only=[User.role])


def _hash_token(plaintext: str) -> str:
    # Tokens carry 240 bits of randomness, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def validate_scopes(scopes) -> list[str]:
    """The scopes asked for, as a sorted list; all of them when None."""
    if scopes is None:
        return list(TOKEN_SCOPES)
    if isinstance(scopes, str):
        scopes = scopes.replace(",", " ").split()
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) for s in scopes):
        raise AccountError("scopes must be a list of scope names")
    unknown = sorted(set(scopes) - set(TOKEN_SCOPES))
    if unknown:
        raise AccountError(
            f"scope {unknown[0]!r} does not exist; choose from {', '.join(TOKEN_SCOPES)}"
        )
    if not scopes:
        raise AccountError(f"give at least one scope: {', '.join(TOKEN_SCOPES)}")
    return [s for s in TOKEN_SCOPES if s in scopes]


def create_token(
    user: User,
    name: str = "",
    lifetime: timedelta | None = None,
    *,
    scopes=None,
    workspace: Workspace | None = None,
    max_lifetime: timedelta | None = None,
    actor: str | None = None,
    source_ip: str | None = None,
    derive=None,
    not_after: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return the row and the plaintext, which is never stored.
    ``scopes`` limits what it may do (default: everything its user may), ``workspace``
    limits it to that one workspace, ``max_lifetime`` is the instance's ceiling.
    ``derive(nonce)``, if given, makes the plaintext from a random nonce kept with the row
    (a sandbox's token, which Berth must be able to give again). ``not_after`` caps the
    expiry (a token made by another token ends no later than it)."""
    if name is not None and not isinstance(name, str):
        raise AccountError("the token name must be text")
    name = (name or "").strip() or "token"
    if len(name) > 64:
        raise AccountError("the token name must be at most 64 characters")
    if user.is_disabled:
        raise AccountError(f"{user.username} is disabled; re-enable the account first")
    chosen = validate_scopes(scopes)
    if max_lifetime is not None and (lifetime is None or lifetime > max_lifetime):
        raise AccountError(
            f"tokens may live at most {format_duration(max_lifetime)} on this instance "
            f"(an admin's setting); choose a shorter lifetime"
        )
    nonce = secrets.token_urlsafe(24) if derive else None
    plaintext = derive(nonce) if derive else TOKEN_PREFIX + secrets.token_urlsafe(30)
    row = ApiToken.create(
        nonce=nonce,
        user=user,
        name=name,
        prefix=plaintext[: len(TOKEN_PREFIX) + 6],
        token_hash=_hash_token(plaintext),
        expires_at=min(
            (t for t in (utcnow() + lifetime if lifetime else None, not_after) if t), default=None
        ),
        scopes=" ".join(chosen),
        workspace=workspace,
    )
    audit.record(
        "token.create",
        actor=actor or user.username,
        source_ip=source_ip,
        target=f"token:{row.id}",
        owner=user.username,
        name=name,
        scopes=row.scopes,
        workspace=workspace.id if workspace else None,
        expires_at=row.expires_at,
    )
    return row, plaintext


def verify_token(
    plaintext: str, now: datetime | None = None, source_ip: str | None = None
) -> ApiToken:
    """Return the active token row for ``plaintext`` (with its user), or raise TokenRefused."""
    if not plaintext or not _TOKEN_SHAPE.match(plaintext):
        raise TokenRefused("malformed_token", "The bearer token is malformed.")
    row = (
        ApiToken.select(ApiToken, User)
        .join(User)
        .where(ApiToken.token_hash == _hash_token(plaintext))
        .first()
    )
    if row is None:
        raise TokenRefused("invalid_token", "The bearer token is not valid.")
    now = now or utcnow()
    status = row.status(now)
    refusal = None
    if status == "revoked":
        refusal = TokenRefused("token_revoked", "The bearer token has been revoked.")
    elif status == "expired":
        refusal = TokenRefused(
            "token_expired", f"The bearer token expired at {row.expires_at:%Y-%m-%d %H:%M} UTC."
        )
    elif row.user.is_disabled:
        refusal = TokenRefused("account_disabled", "The account this token belongs to is disabled.")
    if refusal is not None:
        audit.record(
            "token.use",
            actor=row.user.username,
            source_ip=source_ip,
            target=f"token:{row.id}",
            outcome="denied",
            reason=refusal.reason,
        )
        raise refusal
    # One record per stretch of use (a minute apart), not one per request; so is the last
    # use, to the minute: most requests then write nothing (reads stay reads, and work on
    # a full disk).
    if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_GAP:
        audit.record(
            "token.use",
            actor=row.user.username,
            source_ip=source_ip,
            target=f"token:{row.id}",
            name=row.name,
        )
        row.last_used_at = now
        row.save(only=[ApiToken.last_used_at])
    return row


def revoke_token(token: ApiToken, actor: str | None = None, source_ip: str | None = None) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        token.save(only=[ApiToken.revoked_at])
        audit.record(
            "token.revoke",
            actor=actor or token.user.username,
            source_ip=source_ip,
            target=f"token:{token.id}",
            owner=token.user.username,
            name=token.name,
        )


def tokens_of(user: User) -> list[ApiToken]:
    return list(user.tokens.order_by(ApiToken.created_at.desc()))
