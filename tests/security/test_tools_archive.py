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
    tools_archive.check(path, VERSION)


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_file(f"{VERSION}/../current", b"x"), "points outside the bundle"),
        (_file("/opt/berth/current", b"x"), "points outside the bundle"),
        (_file("versions/other/file", b"x"), "holds 'versions'"),
        (_link(f"{VERSION}/up", "/opt/berth"), "points outside the bundle"),
        (_link(f"{VERSION}/up", "../current"), "points outside the bundle"),
        (_link(f"{VERSION}/bin/up", "../../x"), "points outside the bundle"),
        (_special(f"{VERSION}/fifo", tarfile.FIFOTYPE), "is a device, a FIFO"),
        (_special(f"{VERSION}/disk", tarfile.BLKTYPE), "is a device, a FIFO"),
        (_link(f"{VERSION}/hard", "/etc/shadow", tarfile.LNKTYPE), "hard link"),
        (_link(f"{VERSION}/hard", f"{VERSION}/../x", tarfile.LNKTYPE), "hard link"),
        (_link(f"{VERSION}/hard", f"{VERSION}/bin", tarfile.LNKTYPE), "no file before it"),
        (_link(f"{VERSION}/hard", f"{VERSION}/later", tarfile.LNKTYPE), "no file before it"),
    ],
)
def test_a_member_that_does_not_belong_is_refused(tmp_path, member, problem):
    with pytest.raises(tools_archive.ArchiveError, match=problem):
        tools_archive.check(_archive(tmp_path / "bad.tar", member), VERSION)


def test_nothing_is_written_through_a_link_in_the_archive(tmp_path):
    path = _archive(
        tmp_path / "through.tar",
        _link(f"{VERSION}/up", "bin"),
        _file(f"{VERSION}/up/code-server", b"x"),
    )
    with pytest.raises(tools_archive.ArchiveError, match="written through a link"):
        tools_archive.check(path, VERSION)
    # A hard link to a symlink is a second symlink once unpacked: refused as well.
    path = _archive(
        tmp_path / "alias.tar",
        _link(f"{VERSION}/up", "bin"),
        _link(f"{VERSION}/alias", f"{VERSION}/up", tarfile.LNKTYPE),
        _file(f"{VERSION}/alias/code-server", b"x"),
    )
    with pytest.raises(tools_archive.ArchiveError, match="points at no file before it"):
        tools_archive.check(path, VERSION)


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
        tools_archive.check(path, VERSION)


def test_an_unfinished_or_foreign_bundle_is_refused(tmp_path):
    with pytest.raises(tools_archive.ArchiveError, match="not a finished bundle"):
        tools_archive.check(_archive(tmp_path / "half.tar", marker=False), VERSION)
    with pytest.raises(
        tools_archive.ArchiveError, match=f"holds '{VERSION}', but .* code-server-other"
    ):
        tools_archive.check(_archive(tmp_path / "old.tar"), "code-server-other")
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(tools_archive.ArchiveError, match="not a readable tar archive"):
        tools_archive.check(tmp_path / "junk.tar", VERSION)
    with pytest.raises(tools_archive.ArchiveError, match="not a readable tar archive"):
        tools_archive.check(tmp_path / "missing.tar", VERSION)


def _pax(name: str, headers: dict, data: bytes = b"") -> Entry:
    member, _ = _file(name, data)
    member.pax_headers = headers
    return member, data


def _write_pax(path, *members: Entry):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in [
            _dir(VERSION),
            _file(f"{VERSION}/{tools.MARKER}", b""),
            *members,
        ]:
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def test_names_another_reader_cuts_short_are_refused(tmp_path):
    """A NUL in a PAX name: Python keeps it, the plain header field the copy would get
    ends there, so 'd<NUL>x' would become the link 'd' unseen."""
    link = _link(f"{VERSION}/d\x00x", "..")
    link[0].pax_headers = {"path": f"{VERSION}/d\x00x", "linkpath": "..\x00"}
    path = _write_pax(tmp_path / "nul.tar", link, _file(f"{VERSION}/d/evil", b"x"))
    with pytest.raises(tools_archive.ArchiveError, match="control character"):
        tools_archive.check(path, VERSION)


def test_a_name_seen_twice_is_refused(tmp_path):
    """A folder replaced by a link of the same name would leave what was known about
    the folder's files wrong (a hard link to one then follows the new link)."""
    path = _archive(
        tmp_path / "twice.tar",
        _dir(f"{VERSION}/d"),
        _file(f"{VERSION}/d/f", b"x"),
        _link(f"{VERSION}/d", "bin"),
    )
    with pytest.raises(tools_archive.ArchiveError, match="comes twice"):
        tools_archive.check(path, VERSION)


def test_links_that_leave_the_bundle_only_when_chained_are_refused(tmp_path):
    """Each of these stays inside by its own text; followed through each other, the last
    one leads to /etc."""
    base = f"{VERSION}/a/b/c"
    path = _archive(
        tmp_path / "chain.tar",
        _link(f"{base}/l1", "../.."),
        _link(f"{base}/l2", "l1/../.."),
        _link(f"{base}/l3", "l2/../.."),
        _link(f"{base}/l4", "l3/../../etc"),
    )
    with pytest.raises(tools_archive.ArchiveError, match="through other links"):
        tools_archive.check(path, VERSION)


def test_oversized_headers_and_odd_values_fail_plainly_and_fast(tmp_path):
    """A huge PAX header would keep an older Python's parser busy for minutes; an
    infinite mtime would crash the copy instead of being a clean refusal or a zero."""
    big = _write_pax(tmp_path / "big.tar", _pax(f"{VERSION}/x", {"comment": "9" * 200_000}))
    with pytest.raises(tools_archive.ArchiveError, match="a header of"):
        tools_archive.check(big, VERSION)
    odd = _write_pax(tmp_path / "odd.tar", _pax(f"{VERSION}/x", {"mtime": "inf"}, b"y"))
    copy = io.BytesIO()
    tools_archive.clean_copy(odd, VERSION, copy)
    copy.seek(0)
    with tarfile.open(fileobj=copy) as clean:
        assert clean.getmember(f"{VERSION}/x").mtime == 0


def test_the_marker_must_be_a_file(tmp_path):
    path = tmp_path / "marker.tar"
    with tarfile.open(path, "w") as archive:
        for member, data in [_dir(VERSION), _dir(f"{VERSION}/{tools.MARKER}")]:
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(tools_archive.ArchiveError, match="not a finished bundle"):
        tools_archive.check(path, VERSION)


def test_a_sparse_member_is_refused(tmp_path):
    """A few KB that say 2 GiB: the copy would write them all out."""
    member = tarfile.TarInfo(f"{VERSION}/sparse")
    member.type, member.size = tarfile.GNUTYPE_SPARSE, 0
    raw = bytearray(member.tobuf(tarfile.GNU_FORMAT))
    path = _archive(tmp_path / "sparse.tar")
    body = path.read_bytes()
    end = body.index(b"\0" * 1024, 512 * 4)  # after the three members and their data
    path.write_bytes(body[:end] + bytes(raw) + b"\0" * 1024)
    with pytest.raises(tools_archive.ArchiveError, match="sparse"):
        tools_archive.check(path, VERSION)
