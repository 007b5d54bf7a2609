"""The SSH agent protocol (draft-miller-ssh-agent), the part a client needs to sign in
with keys it never sees: list the identities, sign with one. Everything else (adding,
removing, locking) is refused. Keys are ed25519 only: the ones Berth makes."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FAILURE = 5
REQUEST_IDENTITIES = 11
IDENTITIES_ANSWER = 12
SIGN_REQUEST = 13
SIGN_RESPONSE = 14
MAX_MESSAGE = 256 * 1024  # OpenSSH's own agent limit

Keys = Callable[[], list[tuple[Ed25519PrivateKey, str]]]


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(data: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(data):
        raise ValueError("short message")
    (size,) = struct.unpack_from(">I", data, at)
    end = at + 4 + size
    if end > len(data):
        raise ValueError("short message")
    return data[at + 4 : end], end


def key_blob(key: Ed25519PrivateKey) -> bytes:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _string(b"ssh-ed25519") + _string(raw)


def answer(
    message: bytes,
    keys: Keys,
    may_sign: Callable[[], bool] | None = None,
) -> bytes:
    """The reply to one request (without its length); ``may_sign`` is asked before each
    signature (a right withdrawn meanwhile ends the signing)."""
    if not message:
        return bytes([FAILURE])
    kind, body = message[0], message[1:]
    if kind == REQUEST_IDENTITIES:
        held = keys()
        reply = bytes([IDENTITIES_ANSWER]) + struct.pack(">I", len(held))
        for key, comment in held:
            reply += _string(key_blob(key)) + _string(comment.encode())
        return reply
    if kind == SIGN_REQUEST:
        if may_sign is not None and not may_sign():
            return bytes([FAILURE])
        try:
            blob, at = _read_string(body, 0)
            data, _ = _read_string(body, at)
        except ValueError:
            return bytes([FAILURE])
        for key, _comment in keys():
            if key_blob(key) == blob:
                signature = _string(b"ssh-ed25519") + _string(key.sign(data))
                return bytes([SIGN_RESPONSE]) + _string(signature)
    return bytes([FAILURE])


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 65536))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve(
    conn: socket.socket,
    keys: Keys,
    deadline: float | None = None,
    may_sign: Callable[[], bool] | None = None,
) -> None:
    """Answer requests on ``conn`` until the client closes it, sends too much, or (with
    ``deadline``, a time.monotonic()) the time is up."""
    while deadline is None or time.monotonic() < deadline:
        head = _read_exactly(conn, 4)
        if head is None:
            return
        (size,) = struct.unpack(">I", head)
        if size > MAX_MESSAGE:
            return
        message = _read_exactly(conn, size)
        if message is None:
            return
        reply = answer(message, keys, may_sign)
        conn.sendall(struct.pack(">I", len(reply)) + reply)
