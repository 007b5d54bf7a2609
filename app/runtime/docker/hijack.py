"""A command's stream from the engine, taken over without losing a byte.

``exec_start(socket=True)`` in docker-py reads the engine's answer through a buffered
reader, then hands over the raw socket: whatever the command printed that arrived with
the answer's headers stays in that buffer and is lost (docker/docker-py#3332). On a busy
machine a quick command's whole output can arrive that way; its caller then sees no
output and exit code 0. Here the answer is read with MSG_PEEK up to the end of its
headers and not a byte further, so everything after it is still on the socket, where
poll sees it.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import quote, urlsplit

import docker

MAX_HEAD = 64 * 1024  # the engine's answer before the stream: a status line and headers
MAX_ERROR_BODY = 64 * 1024


class Frames:
    """Splits Docker's multiplexed exec stream (8-byte headers: stream, size) into
    (stream, bytes) pairs; stream 1 is stdout, 2 is stderr."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += chunk
        frames, offset = [], 0
        while len(buffer) - offset >= 8:
            size = int.from_bytes(buffer[offset + 4 : offset + 8], "big")
            end = offset + 8 + size
            if len(buffer) < end:
                break
            frames.append((buffer[offset], bytes(buffer[offset + 8 : end])))
            offset = end
        del buffer[:offset]
        return frames


def connect(api: docker.APIClient) -> socket.socket:
    """A new connection to the engine ``api`` talks to (its Unix socket or plain TCP)."""
    base = api.base_url
    path = getattr(api.get_adapter(base), "socket_path", None)
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(api.timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock
    if base.startswith("http://"):
        address = urlsplit(base)
        sock = socket.create_connection((address.hostname, address.port or 80), api.timeout)
        # Keystrokes and a tunnel's small writes go out at once, as docker-py's did.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    # TLS keeps what it decrypted ahead in its own buffer, out of poll's sight: the
    # same loss as above. SSH engines hand over no socket at all.
    raise docker.errors.DockerException(
        f"commands in workspaces need the engine on a Unix socket or plain TCP, not {base}"
    )


def start_exec(api: docker.APIClient, exec_id: str, tty: bool) -> socket.socket:
    """Start the exec ``exec_id`` and return its stream: the raw socket, blocking, with
    not a byte of the command's read yet. Errors are docker-py's (NotFound, APIError,
    DockerException when the engine does not answer)."""
    try:
        sock = connect(api)
    except OSError as exc:
        raise docker.errors.DockerException(f"the engine did not answer: {exc}") from exc
    try:
        body = json.dumps({"Detach": False, "Tty": tty}).encode()
        sock.sendall(
            (
                f"POST /v{api.api_version}/exec/{quote(exec_id, safe='')}/start HTTP/1.1\r\n"
                "Host: docker\r\n"
                "Content-Type: application/json\r\n"
                "Connection: Upgrade\r\n"
                "Upgrade: tcp\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        status, headers = _read_head(sock)
        if status not in (101, 200):
            raise _refusal(sock, status, headers)
        sock.settimeout(None)
        return sock
    except BaseException as exc:
        sock.close()
        # docker-py's errors are OSErrors too: only a plain socket error is put in words.
        if isinstance(exc, OSError) and not isinstance(exc, docker.errors.DockerException):
            raise docker.errors.DockerException(f"the engine did not answer: {exc}") from exc
        raise


def run_collected(api: docker.APIClient, exec_id: str) -> tuple[int, bytes]:
    """Start the exec ``exec_id`` (no tty, no input) and return its exit code (-1 when
    the engine gave none) and all it printed, stdout and stderr as they came. Each read
    waits at most the API's timeout, as docker-py's did: a wedged engine ends the call."""
    sock = start_exec(api, exec_id, tty=False)
    frames, output = Frames(), bytearray()
    try:
        sock.settimeout(api.timeout)
        while chunk := sock.recv(65536):
            for _stream, data in frames.feed(chunk):
                output += data
    except OSError as exc:
        raise docker.errors.DockerException(f"reading a command's output: {exc}") from exc
    finally:
        sock.close()
    code = exit_code(api, exec_id)
    return -1 if code is None else code, bytes(output)


def exit_code(api: docker.APIClient, exec_id: str, wait_seconds: float = 5.0) -> int | None:
    """The exec's exit code once it has ended; None when the engine has none within
    ``wait_seconds``. Read it after the output's end: the engine may still report the
    command running for a moment."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = api.exec_inspect(exec_id)
        if not found.get("Running") and found.get("ExitCode") is not None:
            return found["ExitCode"]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """The status and headers of the engine's answer, read up to their blank line."""
    head = b""
    while True:
        seen = sock.recv(4096, socket.MSG_PEEK)
        if not seen:
            raise docker.errors.DockerException("the engine closed the connection")
        end = (head + seen).find(b"\r\n\r\n")
        if end >= 0:
            head += _take(sock, end + 4 - len(head))
            break
        head += _take(sock, len(seen))  # all of it is head: no blank line yet
        if len(head) > MAX_HEAD:
            raise docker.errors.DockerException("the engine's answer has no end")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise docker.errors.DockerException(f"the engine answered {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _take(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes a peek has seen already."""
    taken = bytearray()
    while len(taken) < size:
        chunk = sock.recv(size - len(taken))
        if not chunk:
            raise docker.errors.DockerException("the engine closed the connection")
        taken += chunk
    return bytes(taken)


def _refusal(sock: socket.socket, status: int, headers: dict[str, str]) -> Exception:
    """The engine's error as docker-py raises it, with its message."""
    size = headers.get("content-length", "")
    body = b""
    try:
        limit = min(int(size), MAX_ERROR_BODY) if size.isdigit() else MAX_ERROR_BODY
        while len(body) < limit and (chunk := sock.recv(limit - len(body))):
            body += chunk
            if not size.isdigit():
                break  # chunked or unsized: the first part has the message
    except OSError:
        pass
    text = body.decode(errors="replace")
    start, end = text.find("{"), text.rfind("}")
    try:
        message = json.loads(text[start : end + 1]).get("message") or text
    except ValueError:
        message = text.strip() or f"status {status}"
    message = f"{status}: {message}"
    if status == 404:
        return docker.errors.NotFound(message)
    return docker.errors.APIError(message)
