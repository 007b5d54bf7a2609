"""Views of processes: a process tree (from this host's /proc, or a table read
elsewhere), and signals that tolerate processes ending meanwhile."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PROC = Path("/proc")


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state first, the parent pid
    second, the start time 20th), or None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after it do not.
    return text[text.rindex(")") + 2 :].split()


def namespace_pids(pid: int) -> list[int]:
    """``pid`` in each pid namespace it is in, this host's first (NSpid)."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return []
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return [int(word) for word in line.split()[1:]]
    return []


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None once it is gone."""
    fields = stat_fields(pid)
    return (fields[0], int(fields[1])) if fields else None


def table() -> dict[int, tuple[str, int]]:
    """pid -> (state, parent pid) of every process this process sees."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat:
                found[int(entry.name)] = stat
    return found


def descendants(pid: int, processes: dict[int, tuple[str, int]] | None = None) -> list[int]:
    """Every process below ``pid`` (in ``processes``, a ``table()``; this host's by
    default), parents before children."""
    children: dict[int, list[int]] = {}
    for child, (_, parent) in (table() if processes is None else processes).items():
        children.setdefault(parent, []).append(child)
    found, queue = [], list(children.get(pid, []))
    while queue:
        current = queue.pop(0)
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
