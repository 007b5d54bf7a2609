"""The gateway's host key: generated once per instance, kept in the data dir."""

from __future__ import annotations

import io
import os
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FILENAME = "ssh_host_ed25519_key"


def load_or_create(data_dir: Path) -> paramiko.Ed25519Key:
    path = data_dir / FILENAME
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        try:  # O_EXCL: two processes starting at once keep one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    return paramiko.Ed25519Key.from_private_key(io.StringIO(path.read_text()))


def public_line(key: paramiko.PKey) -> str:
    """``ssh-ed25519 AAAA…``, as known_hosts and ssh-keyscan write it."""
    return f"{key.get_name()} {key.get_base64()}"
