"""``berth tools import`` takes a file from elsewhere: an archive that is not a finished
bundle of exactly this version is refused before anything reaches the engine, with the
problem named (a member outside the bundle, one written through a link, a device, no
completion marker, another version)."""

from __future__ import annotations

import io
import tarfile

import pytest

from app.runtime.docker import tools

VERSION = "code-server-test"


Entry = tuple[tarfile.TarInfo, bytes | None]


def _archive(path, *members: Entry, marker: bool = True):
    with tarfile.open(path, "w") as archive:
        entries = [_dir(VERSION), _file(f"{VERSION}/bin/code-server", b"#!/bin/sh\n")]
        if marker:
            entries.append(_file(f"{VERSION}/{tools.MARKER}", b""))
        for member, data in [*entries, *members]:
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def _dir(name: str) -> Entry:
    member = tarfile.TarInfo(name)
    member.type, member.mode = tarfile.DIRTYPE, 0o755
    return member, None


def _file(name: str, data: bytes) -> Entry:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    return member, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> Entry:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member, None


def _special(name: str, kind) -> Entry:
    member = tarfile.TarInfo(name)
    member.type = kind
    return member, None


def test_a_finished_bundle_is_taken_with_its_links_inside(tmp_path):
    path = _archive(
        tmp_path / "ok.tar",
        _link(f"{VERSION}/bin/node", "../node/bin/node"),
        _link(f"{VERSION}/bin/again", f"{VERSION}/bin/code-server", tarfile.LNKTYPE),
    )
    tools.check_archive(path, VERSION)


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_file(f"{VERSION}/../current", b"x"), "points outside the bundle"),
        (_file("/opt/berth/current", b"x"), "points outside the bundle"),
        (_file("versions/other/file", b"x"), "holds 'versions'"),
        (_special(f"{VERSION}/fifo", tarfile.FIFOTYPE), "is a device or FIFO"),
        (_special(f"{VERSION}/disk", tarfile.BLKTYPE), "is a device or FIFO"),
        (_link(f"{VERSION}/hard", "/etc/shadow", tarfile.LNKTYPE), "hard link"),
        (_link(f"{VERSION}/hard", f"{VERSION}/../x", tarfile.LNKTYPE), "hard link"),
    ],
)
def test_a_member_that_does_not_belong_is_refused(tmp_path, member, problem):
    with pytest.raises(tools.ToolsError, match=problem):
        tools.check_archive(_archive(tmp_path / "bad.tar", member), VERSION)


def test_nothing_is_written_through_a_link_in_the_archive(tmp_path):
    path = _archive(
        tmp_path / "through.tar",
        _link(f"{VERSION}/up", "/opt/berth"),
        _file(f"{VERSION}/up/current", b"x"),
    )
    with pytest.raises(tools.ToolsError, match="written through a link"):
        tools.check_archive(path, VERSION)


def test_an_unfinished_or_foreign_bundle_is_refused(tmp_path):
    with pytest.raises(tools.ToolsError, match="not a finished bundle"):
        tools.check_archive(_archive(tmp_path / "half.tar", marker=False), VERSION)
    with pytest.raises(tools.ToolsError, match=f"holds '{VERSION}', but .* code-server-other"):
        tools.check_archive(_archive(tmp_path / "old.tar"), "code-server-other")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(tools.ToolsError, match="not a readable tar archive"):
        tools.check_archive(tmp_path / "junk.tar", VERSION)
    with pytest.raises(tools.ToolsError, match="not a readable tar archive"):
        tools.check_archive(tmp_path / "missing.tar", VERSION)
