"""Unpacking archives that come from elsewhere (an uploaded template, a Feature from a
registry): only regular files and folders, each landing inside the target folder. Links,
devices, FIFOs, absolute paths and ``..`` are refused by name. Python's own tar "data"
filter does the same from 3.11.4; Debian 12's Python is 3.11.2, so Berth checks itself."""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path


class UnsafeArchive(ValueError):
    """A member would land outside the folder or is not a plain file or folder."""


def _safe_name(name: str) -> str:
    clean = posixpath.normpath(name)
    if name.startswith("/") or clean == ".." or clean.startswith("../") or "\0" in name:
        raise UnsafeArchive(f"the archive holds an unsafe path {name!r}")
    return clean


def extract_tar(archive: tarfile.TarFile, target: Path, max_bytes: int = 1 << 30) -> None:
    """Extract ``archive`` into ``target`` (regular files and folders only, modes kept
    without set-id bits, at most ``max_bytes`` in all)."""
    total = 0
    members = []
    for member in archive.getmembers():
        _safe_name(member.name)
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchive(f"the archive member {member.name!r} is not a file or folder")
        total += member.size
        if total > max_bytes:
            raise UnsafeArchive(f"the archive holds more than {max_bytes} bytes")
        member.mode &= 0o777 if member.isdir() else 0o755  # no set-id, no world write
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        members.append(member)
    # Where Python has the data filter too (3.11.4 and newer), it checks once more.
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    archive.extractall(target, members=members, **extra)  # noqa: S202  (members checked above)


def check_zip(archive, max_bytes: int = 1 << 30) -> None:
    """Refuse a zip whose names leave the folder or whose content is too large."""
    total = 0
    for info in archive.infolist():
        _safe_name(info.filename)
        total += info.file_size
        if total > max_bytes:
            raise UnsafeArchive(f"the archive holds more than {max_bytes} bytes")
