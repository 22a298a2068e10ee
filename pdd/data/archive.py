"""Extract zip and tar archives without letting a member escape the target directory.

A downloaded archive is untrusted input. Every member is checked *before* anything is written:
absolute paths, drive letters, ``..`` components, device files and symbolic or hard links that
resolve outside the target make the whole archive refused. Extraction goes to a temporary
directory beside the target that is renamed into place at the end, so a refused or interrupted
extraction leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from pdd.errors import DataError


class UnsafeArchiveError(DataError):
    """An archive with a member that would be written outside the target directory."""

    def __init__(self, archive: Path, member: str, reason: str):
        super().__init__(
            f"refusing to extract {archive}: member {member!r} {reason}. The archive is corrupt or "
            "malicious; delete it and download it again from the official source."
        )


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract `archive` (zip, tar, tar.gz/bz2/xz) into `target`, which must not exist yet."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise DataError(f"cannot extract {archive.name}: {target} already exists; remove it first.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting", dir=target.parent))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, staging)
        else:
            raise DataError(f"{archive} is neither a zip nor a tar archive; delete it and download it again.")
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _checked_relative_path(archive: Path, name: str) -> PurePosixPath:
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(archive, name, "climbs out of the target with '..'")
    return path


def _check_link_target(archive: Path, member: str, link_from: PurePosixPath, link_target: str) -> None:
    """`link_from` is the directory the link target is relative to (inside the archive)."""
    if link_target.startswith("/") or (len(link_target) > 1 and link_target[1] == ":"):
        raise UnsafeArchiveError(archive, member, f"is a link to the absolute path {link_target!r}")
    depth = 0
    for part in (link_from / link_target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise UnsafeArchiveError(archive, member, f"is a link pointing outside the target ({link_target!r})")


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        links = {}
        for info in bundle.infolist():
            path = _checked_relative_path(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                link_target = bundle.read(info).decode("utf-8")
                _check_link_target(archive, info.filename, path.parent, link_target)
                links[path] = link_target
        for info in bundle.infolist():
            if PurePosixPath(info.filename.replace("\\", "/")) not in links:
                bundle.extract(info, staging)
        for path, link_target in links.items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link_target, staging / path)


def _extract_tar(archive: Path, staging: Path) -> None:
    with tarfile.open(archive) as bundle:
        members = bundle.getmembers()
        for member in members:
            path = _checked_relative_path(archive, member.name)
            if member.issym():
                _check_link_target(archive, member.name, path.parent, member.linkname)
            elif member.islnk():
                _check_link_target(archive, member.name, PurePosixPath("."), member.linkname)
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(archive, member.name, "is a device, FIFO or other special file")
        # Python's own "data" filter (3.10.12+/3.11.4+) re-checks the same rules during extraction.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        bundle.extractall(staging, members=members, **extra)
