"""Archives from elsewhere (an uploaded template, a Feature's layer) land inside their
folder as plain files and folders only, on Debian 12's Python too (3.11.2, without the
tar "data" filter)."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from app import archives


def _tar(*members: tarfile.TarInfo, data: bytes = b"x") -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    buffer.seek(0)
    return tarfile.open(fileobj=buffer)


def _member(name: str, kind=tarfile.REGTYPE, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 1 if kind == tarfile.REGTYPE else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    "member, words",
    [
        (_member("/etc/cron.d/x"), "unsafe path"),
        (_member("../../outside"), "unsafe path"),
        (_member("a/../../outside"), "unsafe path"),
        (_member("link", tarfile.SYMTYPE, linkname="/etc/shadow"), "not a file or folder"),
        (_member("hard", tarfile.LNKTYPE, linkname="/etc/shadow"), "not a file or folder"),
        (_member("dev", tarfile.CHRTYPE, devmajor=1, devminor=5), "not a file or folder"),
        (_member("fifo", tarfile.FIFOTYPE), "not a file or folder"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_lands_outside(tmp_path, member, words):
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(archives.UnsafeArchive, match=words):
        archives.extract_tar(_tar(member), target)
    assert list(target.iterdir()) == [] and not (tmp_path / "outside").exists()


def test_plain_files_and_folders_land_without_set_id_bits(tmp_path):
    tool = _member("bin/tool", mode=0o4777)
    folder = _member("bin", tarfile.DIRTYPE, mode=0o777)
    archives.extract_tar(_tar(folder, tool), tmp_path)
    assert (tmp_path / "bin" / "tool").read_bytes() == b"x"
    assert (tmp_path / "bin" / "tool").stat().st_mode & 0o7777 == 0o755


def test_a_zip_that_leaves_its_folder_or_claims_too_much_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape", "x")
    with zipfile.ZipFile(buffer) as archive, pytest.raises(archives.UnsafeArchive):
        archives.check_zip(archive)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big", b"\0" * (2 << 20))
    with zipfile.ZipFile(buffer) as archive, pytest.raises(archives.UnsafeArchive, match="more"):
        archives.check_zip(archive, max_bytes=1 << 20)
