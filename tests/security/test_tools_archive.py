"""``berth tools import`` takes a file from elsewhere: an archive that is not a finished
bundle of exactly this version is refused before anything reaches the engine, with the
problem named (a member outside the bundle, one written through a link, a device, no
completion marker, another version)."""

from __future__ import annotations

import io
import tarfile

import pytest

from app.runtime.docker import tools, tools_archive

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
        (_link(f"{VERSION}/up", "/opt/berth"), "points outside the bundle"),
        (_link(f"{VERSION}/up", "../current"), "points outside the bundle"),
        (_link(f"{VERSION}/bin/up", "../../x"), "points outside the bundle"),
        (_special(f"{VERSION}/fifo", tarfile.FIFOTYPE), "is a device or FIFO"),
        (_special(f"{VERSION}/disk", tarfile.BLKTYPE), "is a device or FIFO"),
        (_link(f"{VERSION}/hard", "/etc/shadow", tarfile.LNKTYPE), "hard link"),
        (_link(f"{VERSION}/hard", f"{VERSION}/../x", tarfile.LNKTYPE), "hard link"),
        (_link(f"{VERSION}/hard", f"{VERSION}/bin", tarfile.LNKTYPE), "no file before it"),
        (_link(f"{VERSION}/hard", f"{VERSION}/later", tarfile.LNKTYPE), "no file before it"),
    ],
)
def test_a_member_that_does_not_belong_is_refused(tmp_path, member, problem):
    with pytest.raises(tools_archive.ArchiveError, match=problem):
        tools.check_archive(_archive(tmp_path / "bad.tar", member), VERSION)


def test_nothing_is_written_through_a_link_in_the_archive(tmp_path):
    path = _archive(
        tmp_path / "through.tar",
        _link(f"{VERSION}/up", "bin"),
        _file(f"{VERSION}/up/code-server", b"x"),
    )
    with pytest.raises(tools_archive.ArchiveError, match="written through a link"):
        tools.check_archive(path, VERSION)
    # A hard link to a symlink is a second symlink once unpacked: refused as well.
    path = _archive(
        tmp_path / "alias.tar",
        _link(f"{VERSION}/up", "bin"),
        _link(f"{VERSION}/alias", f"{VERSION}/up", tarfile.LNKTYPE),
        _file(f"{VERSION}/alias/code-server", b"x"),
    )
    with pytest.raises(tools_archive.ArchiveError, match="points at no file before it"):
        tools.check_archive(path, VERSION)


def test_the_engine_gets_a_clean_copy_not_the_file(tmp_path):
    """Headers another tar reader may take differently (a global PAX header) do not
    reach the engine, nor owners, setuid or world-write bits; hard links to files
    before them stay. (A global PAX path Python applies to the members: refused as a
    member outside the bundle.)"""
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "made elsewhere"}) as archive:  # fmt: skip
        for member, data in [
            _dir(VERSION),
            _file(f"{VERSION}/bin/code-server", b"#!/bin/sh\n"),
            _file(f"{VERSION}/{tools.MARKER}", b""),
        ]:
            member.mode = 0o4777 if member.isreg() else 0o777
            member.uid, member.uname = 1234, "someone"
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
        link = _link(f"{VERSION}/bin/again", f"{VERSION}/bin/code-server", tarfile.LNKTYPE)[0]
        archive.addfile(link)
    copy = io.BytesIO()
    tools_archive.clean_copy(path, VERSION, copy)
    copy.seek(0)
    with tarfile.open(fileobj=copy) as clean:
        assert clean.pax_headers == {}  # no global header
        members = {m.name: m for m in clean}
    assert sorted(members) == [
        VERSION, f"{VERSION}/{tools.MARKER}", f"{VERSION}/bin/again", f"{VERSION}/bin/code-server"
    ]  # fmt: skip
    assert members[VERSION].mode == 0o755 and members[f"{VERSION}/bin/code-server"].mode == 0o755
    assert all(m.uid == 0 and m.gid == 0 and not m.uname for m in members.values())
    assert members[f"{VERSION}/bin/again"].linkname == f"{VERSION}/bin/code-server"


def test_data_after_the_end_of_the_archive_is_refused(tmp_path):
    """A header Python cannot read ends its reading quietly; Docker's reader may go on
    past it. So nothing may follow the end-of-archive zeros."""
    path = _archive(tmp_path / "tail.tar")
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w") as extra:
        member, data = _file(f"{VERSION}/bin/hidden", b"x")
        extra.addfile(member, io.BytesIO(data))
    with path.open("ab") as out:
        out.write(b"\x00" * 1024 + hidden.getvalue())
    with pytest.raises(tools_archive.ArchiveError, match="data after the end of the archive"):
        tools.check_archive(path, VERSION)


def test_an_unfinished_or_foreign_bundle_is_refused(tmp_path):
    with pytest.raises(tools_archive.ArchiveError, match="not a finished bundle"):
        tools.check_archive(_archive(tmp_path / "half.tar", marker=False), VERSION)
    with pytest.raises(
        tools_archive.ArchiveError, match=f"holds '{VERSION}', but .* code-server-other"
    ):
        tools.check_archive(_archive(tmp_path / "old.tar"), "code-server-other")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(tools_archive.ArchiveError, match="not a readable tar archive"):
        tools.check_archive(tmp_path / "junk.tar", VERSION)
    with pytest.raises(tools_archive.ArchiveError, match="not a readable tar archive"):
        tools.check_archive(tmp_path / "missing.tar", VERSION)
