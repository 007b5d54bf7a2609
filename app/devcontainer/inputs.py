"""A repository's build inputs, read as hostile data.

Every path a config names (the config itself, a Dockerfile, a build context, a Feature
folder and what they hold) must resolve inside the checkout it came from (its ``root``):
``"context": "../../.."`` or a link to ``/etc`` is refused by name. Only regular files of
a bounded size are read, opened without following a final link, so a FIFO, a device or a
link swapped in never reaches Berth's own file system. Links inside the checkout that
stay inside it keep working, as they do for the reference CLI.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from app.devcontainer.errors import ConfigError

MAX_TEXT_BYTES = 1024 * 1024  # devcontainer.json, a Dockerfile, .dockerignore, a Feature's json


def inside(
    root: Path, path: Path, what: str, prop: str | None = None, file=None, line=None
) -> Path:
    """``path`` with every link resolved, refused unless it stays inside ``root``."""
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(Path(os.path.realpath(root))):
        raise ConfigError(
            f"{what} leads outside the repository ({_shown(root, path)}); build inputs must "
            "stay inside it",
            file=file,
            property=prop,
            line=line,
        )
    return resolved


def _shown(root: Path, path: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _open_regular(path: Path, what: str, limit: int, **where) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{what} does not exist", **where) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", **where) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ConfigError(f"{what} is not a regular file", **where)
    if info.st_size > limit:
        os.close(fd)
        raise ConfigError(f"{what} is {info.st_size} bytes; at most {limit} are read", **where)
    return fd


def read_bytes(
    root: Path,
    path: Path,
    what: str,
    prop: str | None = None,
    file=None,
    line=None,
    limit: int = MAX_TEXT_BYTES,
) -> bytes:
    """The content of a regular file inside ``root``, at most ``limit`` bytes."""
    where = {"file": file, "property": prop, "line": line}
    fd = _open_regular(inside(root, path, what, prop, file, line), what, limit, **where)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit + 1)[:limit]


def read_text(
    root: Path,
    path: Path,
    what: str,
    prop: str | None = None,
    file=None,
    line=None,
    limit: int = MAX_TEXT_BYTES,
) -> str:
    data = read_bytes(root, path, what, prop, file, line, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text", file=file, property=prop) from None


def hash_tree(digest, root: Path, names: list[str]) -> None:
    """Feed ``digest`` with the listed entries under ``root`` as they are on disk: a
    link's target as text (never what it points to), a regular file's content, the
    kind of anything else."""
    for name in sorted(names):
        path = root / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        digest.update(name.encode() + b"\0")
        if stat.S_ISLNK(info.st_mode):
            digest.update(b"L" + os.readlink(path).encode())
        elif stat.S_ISREG(info.st_mode):
            digest.update(b"F" + _file_digest(path))
        elif not stat.S_ISDIR(info.st_mode):
            digest.update(b"S%o" % stat.S_IFMT(info.st_mode))


def _file_digest(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


def copy_tree(source: Path, target: Path, root: Path, what: str, _seen=None) -> None:
    """Copy a folder from the checkout: regular files and folders as they are; a link
    that stays inside ``root`` as what it points to; anything else is refused."""
    seen = _seen if _seen is not None else set()
    here = os.path.realpath(source)
    if here in seen:
        raise ConfigError(f"{what} links back to a folder it is in")
    seen.add(here)
    target.mkdir()
    for entry in os.scandir(source):
        path, dest = Path(entry.path), target / entry.name
        if entry.is_symlink():
            path = inside(root, path, f"{what}/{entry.name}")
        info = os.stat(path)  # after the check above, a link leads inside the checkout
        if stat.S_ISDIR(info.st_mode):
            copy_tree(path, dest, root, f"{what}/{entry.name}", seen)
        elif stat.S_ISREG(info.st_mode):
            fd = _open_regular(path, f"{what}/{entry.name}", 1 << 40)
            with os.fdopen(fd, "rb") as src, dest.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            dest.chmod(stat.S_IMODE(info.st_mode))
        else:
            raise ConfigError(f"{what}/{entry.name} is not a regular file or folder")
