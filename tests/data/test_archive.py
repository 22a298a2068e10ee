"""Safe extraction: nothing may be written outside the target, and a refused archive leaves nothing."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

import pytest

from pdd.data.archive import UnsafeArchiveError, safe_extract
from pdd.errors import DataError


def _zip(path, members: dict[str, bytes], links: dict[str, str] = {}):  # noqa: B006 - read only
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return path


def _tar(path, members: list[tarfile.TarInfo], data: dict[str, bytes] = {}):  # noqa: B006 - read only
    with tarfile.open(path, "w:gz") as bundle:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            bundle.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _info(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_zip_and_tar_extract_normally(tmp_path):
    safe_extract(_zip(tmp_path / "a.zip", {"d/x.txt": b"x", "y.txt": b"y"}), tmp_path / "zip_out")
    assert (tmp_path / "zip_out/d/x.txt").read_bytes() == b"x"
    archive = _tar(tmp_path / "a.tar.gz", [_info("d/x.txt"), _info("d/link", tarfile.SYMTYPE, "x.txt")],
                   {"d/x.txt": b"x"})
    safe_extract(archive, tmp_path / "tar_out")
    assert (tmp_path / "tar_out/d/link").read_bytes() == b"x"  # a link that stays inside is fine


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "d/../../evil.txt", "C:/evil.txt"])
def test_zip_paths_escaping_the_target_are_refused(tmp_path, name):
    archive = _zip(tmp_path / "bad.zip", {"ok.txt": b"fine", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        safe_extract(archive, tmp_path / "out" / "target")
    assert not (tmp_path / "out" / "target").exists()
    assert os.listdir(tmp_path / "out") == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()


def test_zip_symlink_pointing_outside_is_refused(tmp_path):
    archive = _zip(tmp_path / "bad.zip", {"ok.txt": b"x"}, links={"d/escape": "../../etc"})
    with pytest.raises(UnsafeArchiveError, match="link pointing outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("member", [
    _info("escape", tarfile.SYMTYPE, "../outside"),
    _info("abs", tarfile.SYMTYPE, "/etc/passwd"),
    _info("hard", tarfile.LNKTYPE, "../outside"),
    _info("../evil.txt"),
    _info("dev", tarfile.CHRTYPE),
])
def test_tar_members_escaping_the_target_are_refused(tmp_path, member):
    archive = _tar(tmp_path / "bad.tar.gz", [_info("ok.txt"), member], {"ok.txt": b"ok", "../evil.txt": b"e"})
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["bad.tar.gz"]


def test_not_an_archive_and_existing_target(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"no archive here")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        safe_extract(tmp_path / "junk.zip", tmp_path / "out")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="already exists"):
        safe_extract(_zip(tmp_path / "a.zip", {"x": b"x"}), tmp_path / "out")
