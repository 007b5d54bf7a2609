"""Sealing stored secrets with a key that lives outside the database: a file beside it
in Berth's data folder (``credentials_key``, mode 0600), made once. A database dump or
backup alone holds only ciphertext; losing the key file makes the stored secrets
unreadable (people enter them again), never readable by the wrong party."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from app import db


class VaultError(Exception):
    """A stored secret cannot be read back (another key, or a damaged value)."""


def _path() -> Path:
    if db.credentials_key_file is None:
        raise RuntimeError("the credentials key file is not set; open the database first")
    return db.credentials_key_file


def _read(path: Path) -> bytes:
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise VaultError(
            f"{path} does not hold a key (damaged?); restore it from a backup of the data "
            "folder, or remove it and have people add their git credentials again"
        ) from None
    return key


def _key() -> bytes:
    path = _path()
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    # Written whole and synced, then linked into place: two processes starting at once
    # agree on the first key made, and nobody reads a half-written one, even after a
    # crash.
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(partial, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)
    return _read(path)


def seal(secret: str) -> str:
    return Fernet(_key()).encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return Fernet(_key()).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        raise VaultError(
            f"a stored git credential cannot be decrypted with {_path()} (was the key file "
            "replaced?); remove it and add it again"
        ) from None
