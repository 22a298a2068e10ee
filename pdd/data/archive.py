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
    if _is_absolute(normalised):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(archive, name, "climbs out of the target with '..'")
    return path


def _is_absolute(name: str) -> bool:
    return name.startswith("/") or (len(name) > 1 and name[1] == ":")


class _Links:
    """The symbolic links an archive has declared so far, to resolve later paths through them.

    Checking each link on its own is not enough: ``x/y -> ..`` stays inside, but ``x/y/z -> ..``
    then lands one level above the target. Paths are therefore resolved as the filesystem would,
    following every link declared before them.
    """

    MAX_HOPS = 40

    def __init__(self, archive: Path):
        self.archive = archive
        self.targets: dict[PurePosixPath, str] = {}

    def resolve(self, member: str, path: PurePosixPath) -> PurePosixPath:
        """Where `path` (relative to the target) leads; refuse the archive if that is outside."""
        resolved: list[str] = []
        pending = list(path.parts)
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if not resolved:
                    raise UnsafeArchiveError(self.archive, member, "resolves outside the target (through a link)")
                resolved.pop()
            elif part not in ("", "."):
                resolved.append(part)
                link_target = self.targets.get(PurePosixPath(*resolved))
                if link_target is not None:
                    hops += 1
                    if hops > self.MAX_HOPS:
                        raise UnsafeArchiveError(self.archive, member, "goes through a loop of links")
                    resolved.pop()
                    pending = list(PurePosixPath(link_target).parts) + pending
        return PurePosixPath(*resolved)

    def check_path(self, member: str, path: PurePosixPath) -> None:
        """A file or folder written at `path` (through the links so far) stays inside."""
        self.resolve(member, path)

    def add_symlink(self, member: str, path: PurePosixPath, link_target: str) -> None:
        if _is_absolute(link_target):
            raise UnsafeArchiveError(self.archive, member, f"is a link to the absolute path {link_target!r}")
        location = self.resolve(member, path.parent) / path.name
        try:
            self.resolve(member, location.parent / link_target)
        except UnsafeArchiveError:
            raise UnsafeArchiveError(self.archive, member,
                                     f"is a link pointing outside the target ({link_target!r})") from None
        self.targets[location] = link_target

    def check_hardlink(self, member: str, link_target: str) -> None:
        """Hard-link targets are relative to the archive root."""
        if _is_absolute(link_target):
            raise UnsafeArchiveError(self.archive, member, f"is a link to the absolute path {link_target!r}")
        try:
            self.resolve(member, PurePosixPath(link_target))
        except UnsafeArchiveError:
            raise UnsafeArchiveError(self.archive, member,
                                     f"is a link pointing outside the target ({link_target!r})") from None


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        links = _Links(archive)
        symlinks = {}
        for info in bundle.infolist():
            path = _checked_relative_path(archive, info.filename)
            links.check_path(info.filename, path)
            if stat.S_ISLNK(info.external_attr >> 16):
                symlinks[info.filename] = bundle.read(info).decode("utf-8")
                links.add_symlink(info.filename, path, symlinks[info.filename])
        for info in bundle.infolist():  # in archive order, as the check above resolved them
            link_target = symlinks.get(info.filename)
            if link_target is None:
                bundle.extract(info, staging)
                continue
            location = staging / _checked_relative_path(archive, info.filename)
            location.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link_target, location)


def _extract_tar(archive: Path, staging: Path) -> None:
    with tarfile.open(archive) as bundle:
        members = bundle.getmembers()
        links = _Links(archive)
        for member in members:
            path = _checked_relative_path(archive, member.name)
            links.check_path(member.name, path)
            if member.issym():
                links.add_symlink(member.name, path, member.linkname)
            elif member.islnk():
                links.check_hardlink(member.name, member.linkname)
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(archive, member.name, "is a device, FIFO or other special file")
        # Python's own "data" filter (3.10.12+/3.11.4+) re-checks the same rules during extraction.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            bundle.extractall(staging, members=members, **extra)
        except getattr(tarfile, "FilterError", ()) as exc:
            raise UnsafeArchiveError(archive, getattr(exc.tarinfo, "name", "?"), f"was refused by tarfile ({exc})") \
                from exc
