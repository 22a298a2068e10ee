"""Archives that try to write or point outside their target are refused as a whole, before anything is
written. The single-member cases (``..``, absolute paths, links straight out, devices) are in
tests/data/test_archive.py; here: links that escape only in combination, and the CLI-facing error."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from pdd.data.archive import UnsafeArchiveError, safe_extract
from pdd.errors import DataError

pytestmark = pytest.mark.reliability


def _zip(path: Path, members: list[tuple[str, bytes | str]]) -> Path:
    """`members`: (name, bytes) for files, (name, str) for symbolic links to str."""
    with zipfile.ZipFile(path, "w") as bundle:
        for name, content in members:
            if isinstance(content, str):
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                bundle.writestr(info, content)
            else:
                bundle.writestr(name, content)
    return path


def _tar(path: Path, members: list[tuple[str, bytes | str, bytes]]) -> Path:
    """`members`: (name, type, payload-or-link-name)."""
    with tarfile.open(path, "w") as bundle:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(content)
                bundle.addfile(info, io.BytesIO(content))
            else:
                info.linkname = content.decode()
                bundle.addfile(info)
    return path


SYM, HARD, FILE, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.REGTYPE, tarfile.DIRTYPE

# each escapes only through an earlier link: every member alone resolves inside the target
ZIP_ESCAPES = {
    "link through link": [("x/keep.txt", b"k"), ("x/y", ".."), ("x/y/z", "..")],
    "link target through link": [("x/keep.txt", b"k"), ("x/y", ".."), ("w", "x/y/..")],
    "file through link": [("d/keep.txt", b"k"), ("d/up", ".."), ("d/up/up2", ".."), ("d/up/up2/evil.txt", b"e")],
    "link loop": [("a", "b"), ("b", "a"), ("a/evil.txt", b"e")],
}
TAR_ESCAPES = {
    "link through link": [("x", DIR, b""), ("x/y", SYM, b".."), ("x/y/z", SYM, b"..")],
    "file through link": [("x", DIR, b""), ("x/y", SYM, b".."), ("x/y/w", SYM, b"x/y/.."),
                          ("x/y/w/evil.txt", FILE, b"evil")],
    "hard link through link": [("x", DIR, b""), ("x/y", SYM, b".."), ("h", HARD, b"x/y/../etc/passwd")],
    "hard link to absolute path": [("h", HARD, b"/etc/passwd")],
}


def _assert_nothing_escaped(tmp_path: Path, archive: Path) -> None:
    assert sorted(os.listdir(tmp_path)) == [archive.name, "work"]
    assert os.listdir(tmp_path / "work") == []  # no target, no staging folder left behind


ESCAPES = [("zip", case) for case in ZIP_ESCAPES] + [("tar", case) for case in TAR_ESCAPES]


@pytest.mark.parametrize(("kind", "case"), ESCAPES, ids=[f"{kind}-{case}" for kind, case in ESCAPES])
def test_link_chains_that_escape_are_refused(tmp_path, kind, case):
    build, members = (_zip, ZIP_ESCAPES) if kind == "zip" else (_tar, TAR_ESCAPES)
    archive = build(tmp_path / f"bad.{kind}", members[case])
    (tmp_path / "work").mkdir()
    with pytest.raises(UnsafeArchiveError, match=f"refusing to extract .*bad.{kind}"):
        safe_extract(archive, tmp_path / "work" / "target")
    _assert_nothing_escaped(tmp_path, archive)


def test_links_that_stay_inside_still_extract(tmp_path):
    """The resolution is not a blanket ban: relative links within the tree keep working."""
    zipped = _zip(tmp_path / "ok.zip", [("data/a.txt", b"a"), ("data/sub/b.txt", b"b"), ("data/sub/up", ".."),
                                         ("data/sub/up/alias", "a.txt")])
    target = safe_extract(zipped, tmp_path / "zip_out")
    assert (target / "data/alias").read_bytes() == b"a" and (target / "data/sub/up/sub/b.txt").read_bytes() == b"b"
    tarred = _tar(tmp_path / "ok.tar", [("d", DIR, b""), ("d/a.txt", FILE, b"a"), ("d/l", SYM, b"a.txt"),
                                        ("d/h", HARD, b"d/a.txt")])
    target = safe_extract(tarred, tmp_path / "tar_out")
    assert (target / "d/l").read_bytes() == (target / "d/h").read_bytes() == b"a"


def test_refusal_reaches_the_user_as_a_data_error(tmp_path):
    """`pdd data download` turns DataError into one message without a traceback (exit 2)."""
    archive = _tar(tmp_path / "bad.tar", TAR_ESCAPES["file through link"])
    with pytest.raises(DataError) as error:
        safe_extract(archive, tmp_path / "target")
    assert "x/y/w" in str(error.value) and "download it again" in str(error.value)
