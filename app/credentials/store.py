"""A person's git credentials as records: add a token for a host, make (or make again)
their SSH key pair, list them without secrets, remove one. Each change is audited; no
secret is ever logged, returned or written anywhere but sealed in its row."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app import audit
from app.credentials import vault
from app.db import write_transaction
from app.models import GitCredential, User, stamp, utcnow

MAX_TOKEN = 4096
MAX_USERNAME = 255
DEFAULT_USERNAME = "git"  # GitHub and GitLab take any name beside a token
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(
    rf"^(?:{_LABEL}\.)*{_LABEL}(?::(\d{{1,5}}))?$|^\[[0-9a-f:.]+\](?::(\d{{1,5}}))?$"
)
_USED_EVERY = timedelta(minutes=1)  # last-use times are written at most this often


class CredentialError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Token:
    host: str
    username: str
    secret: str


def host_key(text: str) -> str:
    """``text`` (a host, ``host:port`` or a repository URL) as credentials are kept:
    lower case, with the port only when it is not https's 443."""
    raw = (text or "").strip().lower()
    if "://" in raw:
        try:
            parts = urlsplit(raw)
            raw = parts.hostname + (f":{parts.port}" if parts.port else "")
            if parts.hostname and ":" in parts.hostname:
                raw = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
        except (TypeError, ValueError):
            raw = ""
    found = _HOST.match(raw)
    port = found and (found.group(1) or found.group(2))
    if not found or len(raw) > 255 or (port and not 0 < int(port) < 65536):
        raise CredentialError(
            422,
            "invalid_host",
            f"{text!r} is not a git host (like github.com or git.example.com:8443)",
        )
    return raw.removesuffix(":443")


def _plain(value, what: str, longest: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CredentialError(422, f"invalid_{what}", f"give a {what}")
    value = value.strip()
    # The credential protocol is lines of key=value: a line break would add keys.
    if len(value) > longest or any(ch in value for ch in "\n\r\0") or not value.isprintable():
        raise CredentialError(
            422, f"invalid_{what}", f"the {what} must be one line of at most {longest} characters"
        )
    return value


def _token_of(user, host: str):
    return (
        (GitCredential.user == user)
        & (GitCredential.kind == "token")
        & (GitCredential.host == host)
    )


def _audit(action: str, user: User, source_ip, **detail) -> None:
    """One record of a change to ``user``'s credentials: what, never the secret."""
    audit.record(
        action, actor=user.username, source_ip=source_ip, target=f"user:{user.username}", **detail
    )


def describe(row: GitCredential) -> dict:
    """A credential as the API and the account page show it: never its secret."""
    return {
        "id": row.id,
        "kind": row.kind,
        "host": row.host,
        "username": row.username,
        "public_key": row.public_key,
        "fingerprint": row.fingerprint,
        "created_at": stamp(row.created_at),
        "last_used_at": stamp(row.last_used_at),
    }


def listing(user: User) -> list[dict]:
    rows = GitCredential.select().where(GitCredential.user == user)
    return [describe(row) for row in rows.order_by(GitCredential.kind, GitCredential.host)]


def add_token(user: User, host, token, username=None, *, source_ip=None) -> GitCredential:
    """Keep ``token`` for ``host`` (replacing the one kept before for that host)."""
    host = host_key(host if isinstance(host, str) else "")
    token = _plain(token, "token", MAX_TOKEN)
    username = _plain(username or DEFAULT_USERNAME, "username", MAX_USERNAME)
    with write_transaction():
        row = GitCredential.get_or_none(
            (GitCredential.user == user)
            & (GitCredential.kind == "token")
            & (GitCredential.host == host)
        )
        if row is None:
            row = GitCredential(user=user, kind="token", host=host)
        row.username, row.secret = username, vault.seal(token)
        row.created_at, row.last_used_at = utcnow(), None
        row.save()
        _audit("git_credential.add", user, source_ip, kind="token", host=host)
    return row


def make_key(user: User, *, source_ip=None) -> GitCredential:
    """Make ``user`` a new ed25519 key pair (replacing the one made before: a host that
    had the old public key no longer lets it in)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    blob = base64.b64decode(public.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    with write_transaction():
        GitCredential.delete().where(
            (GitCredential.user == user) & (GitCredential.kind == "ssh")
        ).execute()
        row = GitCredential.create(
            user=user,
            kind="ssh",
            host=None,
            username=None,
            secret=vault.seal(private),
            public_key=f"{public} berth-{user.username}",
            fingerprint=fingerprint,
        )
        _audit("git_credential.add", user, source_ip, kind="ssh", fingerprint=fingerprint)
    return row


def remove(user: User, credential_id, *, source_ip=None) -> None:
    row = GitCredential.get_or_none(
        (GitCredential.id == credential_id) & (GitCredential.user == user)
    )
    if row is None:
        raise CredentialError(404, "not_found", "you have no such git credential")
    with write_transaction():
        row.delete_instance()
        _audit(
            "git_credential.remove",
            user,
            source_ip,
            kind=row.kind,
            host=row.host,
            fingerprint=row.fingerprint,
        )


def _used(row: GitCredential) -> None:
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > _USED_EVERY:
        GitCredential.update(last_used_at=now).where(GitCredential.id == row.id).execute()


def token_for(user_id: int, host: str) -> Token | None:
    """The token ``user_id`` keeps for ``host`` (a host key), read now: a removed one is
    gone at once."""
    row = GitCredential.get_or_none(
        (GitCredential.user == user_id)
        & (GitCredential.kind == "token")
        & (GitCredential.host == host)
    )
    if row is None:
        return None
    found = Token(host, row.username or DEFAULT_USERNAME, vault.unseal(row.secret))
    _used(row)
    return found


def ssh_key(user_id: int) -> tuple[Ed25519PrivateKey, str] | None:
    """The key pair Berth made for ``user_id`` and its comment, read now."""
    row = GitCredential.get_or_none((GitCredential.user == user_id) & (GitCredential.kind == "ssh"))
    if row is None:
        return None
    key = serialization.load_ssh_private_key(vault.unseal(row.secret).encode(), password=None)
    _used(row)
    return key, (row.public_key or "").rsplit(" ", 1)[-1]
