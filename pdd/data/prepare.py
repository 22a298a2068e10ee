"""Turn a list of raw source images into a prepared dataset directory, atomically.

The dataset-specific part (which files exist, their labels, the split protocol) lives in
`pdd.data.preparers`; this module is the shared machinery every preparer runs through:

1. **stage**: decode every candidate once (`pdd.data.images.read_image`), encode it as a canonical
   PNG in a staging folder and hash the source; unreadable files stop the run, or with
   ``exclude_unreadable`` become excluded rows of split.csv (never a silent drop);
2. **assign**: the preparer's split rule puts each staged image in train, test or excluded;
3. **place**: staged files are renamed into ``[<class>/]{train,test}/<anomaly>/<name>.png`` (masks
   into ``[<class>/]ground_truth/<anomaly>/<name>_mask.png``) and split.csv is written.

All of it happens in a temporary directory beside the output that is renamed into place at the
end (`atomic_directory`), so an interrupted run never leaves a dataset that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pdd.data.images import UnreadableImageError, detected_format, mask_png_bytes, png_bytes, read_image, read_mask
from pdd.data.split import EXCLUDED, NORMAL, SPLIT_FILE, TEST, SplitRow, read_split_csv, write_split_csv
from pdd.errors import DataError
from pdd.io import sha256_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass(frozen=True)
class Candidate:
    """A raw image that may become part of the prepared dataset."""

    source: Path  # absolute path of the raw file
    source_rel: str  # the same path relative to the raw root, as recorded in split.csv
    cls: str
    label: int
    anomaly: str = NORMAL
    split: str | None = None  # fixed by the raw layout, or None to be drawn by the preparer's split rule
    mask: Path | None = None
    name: str | None = None  # prepared file stem; defaults to the source stem

    @property
    def stem(self) -> str:
        return self.name or self.source.stem


@dataclass(frozen=True)
class Staged:
    """A candidate that decoded cleanly, waiting in the staging folder."""

    candidate: Candidate
    source_sha256: str
    image_file: Path
    image_sha256: str
    mask_file: Path | None
    note: str = ""


@dataclass(frozen=True)
class Assignment:
    staged: Staged
    split: str  # train | test | excluded
    note: str = ""


@dataclass
class PrepareReport:
    """What `prepare_dataset` wrote: the split rows and counts to compare with the protocol."""

    out: Path
    rows: list[SplitRow] = field(repr=False)

    @property
    def counts(self) -> dict[str, int]:
        return count_rows(self.rows)


def count_rows(rows: Sequence[SplitRow]) -> dict[str, int]:
    """Counts keyed ``[<class>/]train``, ``[<class>/]test``, ``.../test/normal``, ``.../test/anomalous``
    and ``excluded`` (the class prefix only for multi-class sets)."""
    classes = {row.cls for row in rows if row.split != EXCLUDED}
    counts: Counter[str] = Counter()
    for row in rows:
        if row.split == EXCLUDED:
            counts["excluded"] += 1
            continue
        prefix = f"{row.cls}/" if len(classes) > 1 else ""
        counts[f"{prefix}{row.split}"] += 1
        if row.split == TEST:
            counts[f"{prefix}test/{'normal' if row.label == 0 else 'anomalous'}"] += 1
    return dict(sorted(counts.items()))


def excluded_row(cls: str, source_rel: str, reason: str, source: Path | None = None, label: int | str = "") -> SplitRow:
    digest = sha256_file(source) if source is not None and source.is_file() else ""
    return SplitRow(cls, EXCLUDED, label, "", "", "", "", source_rel, digest, reason)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield work
        retired = None
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / target.name)
        os.replace(work, target)
        if retired is not None:
            shutil.rmtree(retired)
    finally:
        if work.exists():
            shutil.rmtree(work)


def keep_fixed_splits(staged: Sequence[Staged], seed: int) -> list[Assignment]:
    """The split rule of layouts that already say which file is train or test."""
    return [Assignment(item, item.candidate.split) for item in staged]


def prepare_dataset(
    out: str | Path,
    candidates: Sequence[Candidate],
    exclusions: Sequence[SplitRow] = (),
    assign: Callable[[Sequence[Staged], int], list[Assignment]] = keep_fixed_splits,
    *,
    seed: int = 0,
    per_class_tree: bool = False,
    exclude_unreadable: bool = False,
    description: str = "preparing",
) -> PrepareReport:
    """Stage, split and place `candidates` into `out` (replacing it atomically); write split.csv."""
    out = Path(out)
    candidates = sorted(candidates, key=lambda c: c.source_rel)
    with atomic_directory(out) as work:
        staging = work / ".staging"
        staging.mkdir()
        staged, rows = [], list(exclusions)
        for index, candidate in enumerate(tqdm(candidates, desc=description, unit="img", disable=None)):
            try:
                staged.append(_stage(candidate, staging / str(index)))
            except UnreadableImageError as exc:
                if not exclude_unreadable:
                    raise
                rows.append(excluded_row(candidate.cls, candidate.source_rel, f"unreadable: {exc.reason}",
                                         candidate.source, candidate.label))
        rows += _place(assign(staged, seed), work, per_class_tree)
        shutil.rmtree(staging)
        write_split_csv(rows, work / SPLIT_FILE)
    return PrepareReport(out, rows)


def _stage(candidate: Candidate, stem: Path) -> Staged:
    image = read_image(candidate.source)
    encoded = png_bytes(image)
    image_file = stem.with_suffix(".png")
    image_file.write_bytes(encoded)
    mask_file = None
    if candidate.mask is not None:
        mask = read_mask(candidate.mask)
        if mask.shape != (image.height, image.width):
            raise DataError(
                f"mask {candidate.mask} is {mask.shape[1]}x{mask.shape[0]} but its image {candidate.source} is "
                f"{image.width}x{image.height}; the download is inconsistent, fetch it again."
            )
        mask_file = stem.with_name(stem.name + "_mask.png")
        mask_file.write_bytes(mask_png_bytes(mask))
    return Staged(candidate, sha256_file(candidate.source), image_file, hashlib.sha256(encoded).hexdigest(),
                  mask_file, _format_note(candidate.source))


def _format_note(source: Path) -> str:
    expected = _SUFFIX_FORMATS.get(source.suffix.lower())
    actual = detected_format(source)
    if expected and actual and actual != expected:
        return f"content is {actual} despite the {source.suffix} suffix"
    return ""


def _place(assignments: Sequence[Assignment], work: Path, per_class_tree: bool) -> list[SplitRow]:
    rows, taken = [], {}
    for assignment in assignments:
        item, candidate = assignment.staged, assignment.staged.candidate
        note = "; ".join(text for text in (item.note, assignment.note) if text)
        if assignment.split == EXCLUDED:
            rows.append(SplitRow(candidate.cls, EXCLUDED, candidate.label, candidate.anomaly, "", "", "",
                                 candidate.source_rel, item.source_sha256, note))
            continue
        prefix = f"{candidate.cls}/" if per_class_tree else ""
        path = f"{prefix}{assignment.split}/{candidate.anomaly}/{candidate.stem}.png"
        clash = taken.setdefault(path.casefold(), candidate.source_rel)
        if clash != candidate.source_rel:
            raise DataError(f"{clash} and {candidate.source_rel} would both be prepared as {path}; "
                            "rename one of them in the raw folder.")
        _move(item.image_file, work / path)
        mask = ""
        if item.mask_file is not None:
            mask = f"{prefix}ground_truth/{candidate.anomaly}/{candidate.stem}_mask.png"
            _move(item.mask_file, work / mask)
        rows.append(SplitRow(candidate.cls, assignment.split, candidate.label, candidate.anomaly, path,
                             item.image_sha256, mask, candidate.source_rel, item.source_sha256, note))
    return rows


def _move(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder` (case-insensitive suffix), sorted; hidden files skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)



def verify_prepared(root: str | Path) -> list[str]:
    """Problems with a prepared dataset: files listed in split.csv that are missing or altered."""
    root = Path(root)
    problems = []
    for row in read_split_csv(root):
        if not row.path:
            continue
        path = root / row.path
        if not path.is_file():
            problems.append(f"{row.path} is missing")
        elif sha256_file(path) != row.sha256:
            problems.append(f"{row.path} differs from its recorded sha256")
        if row.mask and not (root / row.mask).is_file():
            problems.append(f"{row.mask} is missing")
    return problems
