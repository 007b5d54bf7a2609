"""The tools bundle as a file from elsewhere (``berth tools import``): checked member by
member and written again as a clean archive, which is all the engine ever reads.

Docker unpacks with Go's archive/tar, which reads some headers differently from Python's
tarfile (PAX against GNU long names, a global PAX path, a checksum that starts with a NUL,
a hard link to a symlink). Checking the original and handing it over would check one
archive and unpack another; writing a new one from what was checked closes that gap.
What goes in: members of exactly one version's folder, regular files, folders, symlinks
that stay inside the folder and hard links to regular files before them; nothing written
through a link; owners root, no setuid, setgid, sticky or world-write bit; nothing after
the end of the archive; the completion marker.
"""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app.runtime import ProvisionError
from app.runtime.layout import TOOLS_MARKER as MARKER

CHUNK = 1 << 20
# Bits kept on files and folders: the owner's, read and execute for others.
KEPT_MODE = 0o755


class ArchiveError(ProvisionError):
    """The file is no finished bundle of this version; the message says why."""


class _Bundle:
    """What the archive has shown so far, to judge the next member by."""

    def __init__(self, path: Path, version: str):
        self.path, self.version = path, version
        self.links: set[str] = set()  # symlinks: nothing is written through them
        self.files: set[str] = set()  # regular files: what a hard link may point at
        self.finished = False

    def fail(self, problem: str):
        raise ArchiveError(f"{self.path}: {problem}")

    def clean(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        """A new header for ``member``, from its checked name, type and target only."""
        name = self._name(member.name, "member")
        if any(parent in self.links for parent in _parents(name)):
            self.fail(f"the member {member.name!r} is written through a link")
        out = tarfile.TarInfo(name)
        out.uid = out.gid = 0
        out.mtime = int(member.mtime) if member.mtime and member.mtime > 0 else 0
        if member.isreg():
            out.type, out.size, out.mode = tarfile.REGTYPE, member.size, member.mode & KEPT_MODE
        elif member.isdir():
            out.type, out.mode = tarfile.DIRTYPE, member.mode & KEPT_MODE
        elif member.issym():
            out.type, out.mode, out.linkname = tarfile.SYMTYPE, 0o777, self._target(member, name)
        elif member.islnk():
            target = self._name(member.linkname, "hard link target")
            if target not in self.files:
                self.fail(f"the hard link {member.name!r} points at no file before it")
            out.type, out.mode, out.linkname = tarfile.LNKTYPE, 0o644, target
        else:
            self.fail(f"the member {member.name!r} is a device or FIFO")
        # A name seen again takes its latest kind (tar replaces it on unpacking).
        self.links.discard(name)
        self.files.discard(name)
        if out.type == tarfile.SYMTYPE:
            self.links.add(name)
        elif out.type == tarfile.REGTYPE:
            self.files.add(name)
        self.finished = self.finished or name == f"{self.version}/{MARKER}"
        return out

    def _name(self, raw: str, what: str) -> str:
        if raw.startswith("/") or ".." in raw.split("/"):
            self.fail(f"the {what} {raw!r} points outside the bundle")
        name = posixpath.normpath(raw)
        top = name.split("/", 1)[0]
        if top != self.version:
            self.fail(
                f"it holds {top!r}, but this Berth needs the bundle {self.version} "
                "(export it from a Berth of the same version)"
            )
        return name

    def _target(self, member: tarfile.TarInfo, name: str) -> str:
        """A symlink's target, which must stay inside the version's folder."""
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if target.startswith("/") or not resolved.startswith(self.version + "/"):
            self.fail(f"the link {member.name!r} points outside the bundle ({target!r})")
        return target


def _parents(name: str):
    return (str(parent) for parent in PurePosixPath(name).parents)


def clean_copy(path: Path, version: str, out: BinaryIO) -> None:
    """Write the bundle in the archive at ``path`` to ``out`` as a clean tar archive, or
    raise ArchiveError at the first thing that does not belong (``out`` then holds a
    part: its reader must not use it)."""
    bundle = _Bundle(path, version)
    try:
        with tarfile.open(path, "r:") as source, tarfile.open(
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT
        ) as copy:  # fmt: skip
            for member in source:
                header = bundle.clean(member)
                data = source.extractfile(member) if member.isreg() else None
                copy.addfile(header, data)
            _nothing_after_the_end(bundle, source)
    except (OSError, tarfile.TarError) as exc:
        raise ArchiveError(f"{path} is not a readable tar archive: {exc}") from None
    if not bundle.finished:
        bundle.fail(
            f"not a finished bundle: {version}/{MARKER} is missing (export it again from "
            "an engine where the tools job succeeded)"
        )


def _nothing_after_the_end(bundle: _Bundle, source: tarfile.TarFile) -> None:
    """Python stops reading at a header it cannot read; another reader may go on. So
    what follows the last member must be the end-of-archive zeros and nothing else."""
    raw = source.fileobj
    raw.seek(source.offset)
    while chunk := raw.read(CHUNK):
        if chunk.strip(b"\0"):
            bundle.fail("there is data after the end of the archive (a damaged or crafted file)")


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def check(path: Path, version: str) -> None:
    """Whether the archive at ``path`` is a finished bundle of ``version`` (ArchiveError
    names what is wrong), before anything is asked of the engine."""
    clean_copy(path, version, _Discard())
