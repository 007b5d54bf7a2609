"""Users' SSH public keys: parsing OpenSSH's one-line format, fingerprints, storage."""

from __future__ import annotations

import base64
import binascii
import hashlib

import paramiko

from app.accounts import AccountError
from app.db import write_transaction
from app.models import SshKey, User, row_id, stamp, utcnow

# What the gateway's paramiko can verify. Security-key (sk-*) types and DSA are refused
# with a message that says so, rather than stored and silently never matching.
ACCEPTED_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
MIN_RSA_BITS = 2048


class SshKeyError(AccountError):
    """A public key that cannot be added; the message says why."""


def fingerprint(blob: bytes) -> str:
    """The SHA256 fingerprint exactly as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def parse(text: str) -> tuple[str, bytes, str]:
    """``type base64 [comment]`` → (type, key blob, comment), validated by paramiko."""
    parts = (text or "").strip().split(None, 2)
    if len(parts) < 2:
        raise SshKeyError(
            "paste a public key in OpenSSH format: 'ssh-ed25519 AAAA… comment' "
            "(the contents of ~/.ssh/id_ed25519.pub)"
        )
    key_type, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if key_type.startswith("sk-") or key_type == "ssh-dss":
        raise SshKeyError(
            f"{key_type} keys are not supported by the gateway; use an ssh-ed25519 "
            "(ssh-keygen -t ed25519), ecdsa or RSA key"
        )
    if key_type not in ACCEPTED_TYPES:
        raise SshKeyError(
            f"{key_type!r} is not a public key type; expected one of ssh-ed25519, ..."
        )
    try:
        blob = base64.b64decode(encoded, validate=True)
        key = paramiko.PKey.from_type_string(key_type, blob)
    except (binascii.Error, ValueError, paramiko.SSHException) as exc:
        raise SshKeyError(f"the {key_type} key is damaged or incomplete ({exc})") from None
    if key_type == "ssh-rsa" and key.get_bits() < MIN_RSA_BITS:
        raise SshKeyError(f"this RSA key has {key.get_bits()} bits; use at least {MIN_RSA_BITS}")
    return key_type, blob, comment


def add(user: User, text: str, name: str | None = None) -> SshKey:
    key_type, blob, comment = parse(text)
    label = (name or comment or key_type).strip()[:64]
    print_ = fingerprint(blob)
    with write_transaction():
        if SshKey.select().where(SshKey.fingerprint == print_).exists():
            # Not saying whose: a key identifies exactly one account.
            raise SshKeyError(f"the key {print_} is already registered to an account")
        return SshKey.create(
            user=user,
            name=label,
            key_type=key_type,
            public_key=f"{key_type} {base64.b64encode(blob).decode()}",
            fingerprint=print_,
        )


def keys_of(user: User) -> list[SshKey]:
    return list(SshKey.select().where(SshKey.user == user).order_by(SshKey.id))


def remove(user: User, key_id) -> SshKey:
    key = None
    if row_id(key_id) is not None:
        key = SshKey.get_or_none((SshKey.id == row_id(key_id)) & (SshKey.user == user))
    if key is None:
        raise SshKeyError(f"you have no SSH key {key_id}")
    key.delete_instance()
    return key


def owner_of(key_blob: bytes) -> tuple[User, SshKey] | None:
    """The enabled user a key belongs to, or None."""
    row = (
        SshKey.select(SshKey, User)
        .join(User)
        .where(SshKey.fingerprint == fingerprint(key_blob))
        .first()
    )
    if row is None or row.user.is_disabled:
        return None
    return row.user, row


def touch(key: SshKey) -> None:
    SshKey.update(last_used_at=utcnow()).where(SshKey.id == key.id).execute()


def to_dict(key: SshKey) -> dict:
    return {
        "id": key.id,
        "name": key.name,
        "type": key.key_type,
        "fingerprint": key.fingerprint,
        "public_key": key.public_key,
        "created_at": stamp(key.created_at),
        "last_used_at": stamp(key.last_used_at),
    }
