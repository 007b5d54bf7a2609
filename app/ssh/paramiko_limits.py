"""A bound paramiko does not put on what a client sends before it is signed in.

paramiko reads a keyboard-interactive answer message by taking the client's count of
answers and reading that many, before the server is asked anything: a count of 2**32-1
in a short packet appends some four billion empty answers (tens of GB) in the
connection's thread, and it goes on after the connection is dropped. Berth asks no
keyboard-interactive question (it only uses the method's instructions to say why a
login was refused), so more than a handful of answers is an attack: the connection ends.
"""

from __future__ import annotations

from paramiko.auth_handler import AuthHandler
from paramiko.ssh_exception import SSHException

MAX_ANSWERS = 16

_read_answers = AuthHandler._parse_userauth_info_response


def _bounded_answers(self, m):
    start = m.packet.tell()
    count = m.get_int()
    m.packet.seek(start)
    if count > MAX_ANSWERS:
        raise SSHException(f"a keyboard-interactive answer of {count} parts")
    return _read_answers(self, m)


def install() -> None:
    """Idempotent: the gateway calls it before it serves anyone."""
    AuthHandler._parse_userauth_info_response = _bounded_answers
