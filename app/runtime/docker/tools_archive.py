"""The tools bundle as a file from elsewhere (``berth tools import``): checked member by
member and written again as a clean archive, which is all the engine ever reads.

Docker unpacks with Go's archive/tar, which reads some headers differently from Python's
tarfile (PAX against GNU long names, a global PAX path, a checksum that starts with a NUL,
a hard link to a symlink). Checking the original and handing it over would check one
archive and unpack another; writing a new one from what was checked closes that gap.
What goes in: members of exactly one version's folder, each name once and without
control characters; regular files (not sparse), folders, symlinks that stay inside the
folder when followed through the archive's other links, hard links to regular files
before them; nothing written through a link; owners root, no setuid, setgid, sticky or
world-write bit; nothing after the end of the archive; the completion marker as a file.
Headers larger than any real bundle needs are refused before Python parses them (a PAX
header of a few hundred KB takes minutes in the parser of older Pythons).
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
MAX_HEADER = 16 << 10  # a PAX or long-name header (a path is at most 4 KiB)
MAX_TOTAL = 8 << 30  # the bundle is under 1 GiB
MAX_LINK_HOPS = 40
CONTROL = {chr(code) for code in range(32)} | {"\x7f"}


class ArchiveError(ProvisionError):
    """The file is no finished bundle of this version; the message says why."""


class _Header(tarfile.TarInfo):
    """Python's parser, with the size of a header it is about to parse bounded."""

    def _proc_pax(self, archive):
        _bounded(self)
        return super()._proc_pax(archive)

    def _proc_gnulong(self, archive):
        _bounded(self)
        return super()._proc_gnulong(archive)

    def _proc_sparse(self, archive):
        raise tarfile.SubsequentHeaderError("a sparse file; a bundle has none")


def _bounded(header: tarfile.TarInfo) -> None:
    if header.size > MAX_HEADER:
        raise tarfile.SubsequentHeaderError(
            f"a header of {header.size} bytes (more than {MAX_HEADER} is no bundle's)"
        )


class _Bundle:
    """What the archive has shown so far, to judge the next member by."""

    def __init__(self, path: Path, version: str):
        self.path, self.version = path, version
        self.seen: set[str] = set()
        self.links: dict[str, str] = {}  # symlink -> target: nothing is written through
        self.files: set[str] = set()  # regular files: what a hard link may point at
        self.total = 0
        self.finished = False

    def fail(self, problem: str):
        raise ArchiveError(f"{self.path}: {problem}")

    def clean(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        """A new header for ``member``, from its checked name, type and target only."""
        name = self._name(member.name, "member")
        if name in self.seen:
            self.fail(f"the member {name!r} comes twice (an export has each name once)")
        self.seen.add(name)
        if any(parent in self.links for parent in _parents(name)):
            self.fail(f"the member {member.name!r} is written through a link")
        out = tarfile.TarInfo(name)
        out.uid = out.gid = 0
        out.mtime = int(member.mtime) if 0 < member.mtime < 2**33 else 0
        if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
            self.fail(f"the member {member.name!r} is a sparse file; a bundle has none")
        if member.isreg():
            self.total += member.size
            if self.total > MAX_TOTAL:
                self.fail(f"it holds more than {MAX_TOTAL >> 30} GiB; a bundle is under 1 GiB")
            out.type, out.size, out.mode = tarfile.REGTYPE, member.size, member.mode & KEPT_MODE
            self.files.add(name)
        elif member.isdir():
            out.type, out.mode = tarfile.DIRTYPE, member.mode & KEPT_MODE
        elif member.issym() and name != self.version:
            out.type, out.mode, out.linkname = tarfile.SYMTYPE, 0o777, self._target(member, name)
            self.links[name] = out.linkname
        elif member.islnk():
            target = self._name(member.linkname, "hard link target")
            if target not in self.files or any(p in self.links for p in _parents(target)):
                self.fail(f"the hard link {member.name!r} points at no file before it")
            out.type, out.mode, out.linkname = tarfile.LNKTYPE, 0o644, target
        else:
            self.fail(f"the member {member.name!r} is a device, a FIFO or a misplaced link")
        if name == f"{self.version}/{MARKER}":
            self.finished = out.type == tarfile.REGTYPE
        return out

    def check_links(self) -> None:
        """Each symlink, followed through the archive's other links, stays inside the
        version's folder (one at a time each looks inside; chained, they may not)."""
        for name in self.links:
            if not self._inside(name):
                self.fail(f"the link {name!r} leads outside the bundle through other links")

    def _inside(self, name: str) -> bool:
        parts = name.split("/")
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    return False
                done.pop()
                continue
            here = "/".join([*done, part])
            if here in self.links:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return False  # a loop, or deeper than anything real
                parts = self.links[here].split("/") + parts
                continue
            done.append(part)
        return bool(done) and done[0] == self.version

    def _name(self, raw: str, what: str) -> str:
        if CONTROL.intersection(raw):
            self.fail(f"the {what} {raw!r} has a control character in its name")
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
        if CONTROL.intersection(target) or not target:
            self.fail(f"the link {member.name!r} has an empty target or a control character")
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
        with tarfile.open(path, "r:", tarinfo=_Header) as source, tarfile.open(
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT
        ) as copy:  # fmt: skip
            for member in source:
                header = bundle.clean(member)
                data = source.extractfile(member) if member.isreg() else None
                copy.addfile(header, data)
            _nothing_after_the_end(bundle, source)
            bundle.check_links()
    except (OSError, ValueError, OverflowError, tarfile.TarError) as exc:
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
