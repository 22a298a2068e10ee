"""`split.csv`: the one record of which file went where, and why others were left out.

Every prepared dataset (real or synthetic) has a ``split.csv`` at its root with one row per
prepared image and one row per excluded source file. It is written deterministically (fixed
column order, sorted rows, ``\\n`` line endings), so the same raw data and seed always give a
byte-identical file, and its sha256 identifies the split in run provenance.
"""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TypeVar

from pdd.errors import DataError
from pdd.io import atomic_write_text, sha256_file

SPLIT_FILE = "split.csv"
TRAIN, TEST, EXCLUDED = "train", "test", "excluded"
NORMAL = "good"

T = TypeVar("T")


@dataclass(frozen=True)
class SplitRow:
    """One line of split.csv. Excluded rows have ``split == "excluded"``, an empty ``path`` and a ``note``."""

    cls: str  # class name (Uni-Medical) or dataset name
    split: str  # train | test | excluded
    label: int | str  # 0 normal, 1 anomalous ("" when excluded before labelling)
    anomaly: str  # "good" or the anomaly folder name
    path: str  # prepared image, relative to the dataset root
    sha256: str  # of the prepared image
    mask: str  # prepared mask relative to the root, "" when none
    source: str  # source file relative to the raw root
    source_sha256: str
    note: str  # why a file was excluded, or how it was altered

    def __post_init__(self) -> None:
        if self.split not in (TRAIN, TEST, EXCLUDED):
            raise ValueError(f"split must be train, test or excluded, not {self.split!r}")


COLUMNS = tuple("class" if f.name == "cls" else f.name for f in fields(SplitRow))
_SPLIT_ORDER = {TRAIN: 0, TEST: 1, EXCLUDED: 2}


def _sort_key(row: SplitRow) -> tuple:
    return (_SPLIT_ORDER[row.split], row.cls, row.anomaly != NORMAL, row.anomaly, row.path, row.source)


def format_split_csv(rows: Iterable[SplitRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=_sort_key):
        writer.writerow(asdict(row).values())
    return buffer.getvalue()


def write_split_csv(rows: Iterable[SplitRow], path: str | Path) -> None:
    atomic_write_text(path, format_split_csv(rows))


def read_split_csv(root: str | Path) -> list[SplitRow]:
    """The rows of ``<root>/split.csv``; a missing or malformed file raises `DataError`."""
    path = Path(root) / SPLIT_FILE
    if not path.is_file():
        raise DataError(
            f"{path} not found: {root} is not a prepared dataset. Create it with "
            "`pdd data prepare NAME --raw DIR --out DIR` or `pdd data synthetic NAME --out DIR`."
        )
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != COLUMNS:
            raise DataError(f"{path} has columns {header}, expected {COLUMNS}; prepare the dataset again.")
        rows = []
        for line, values in enumerate(reader, start=2):
            if len(values) != len(COLUMNS):
                raise DataError(f"{path} line {line} has {len(values)} fields, expected {len(COLUMNS)}; "
                                "prepare the dataset again.")
            record = dict(zip(COLUMNS, values, strict=True))
            record["cls"] = record.pop("class")
            record["label"] = int(record["label"]) if record["label"] else ""
            rows.append(SplitRow(**record))
    return rows


def split_sha256(root: str | Path) -> str:
    """Identifies a prepared split in run provenance (`metrics.json` → ``provenance.split_sha256``)."""
    return sha256_file(Path(root) / SPLIT_FILE)


def seeded_subset(items: Sequence[T], k: int, seed: int, group_of=None) -> tuple[list[T], list[T]]:
    """Pick exactly `k` of `items` at random (reproducibly from `seed`); return (chosen, rest).

    `items` must already be in a canonical order. With `group_of`, items mapping to the same key
    (e.g. byte-identical duplicates) are chosen together, so a duplicate can never end up on both
    sides of a train/test split. Groups are drawn in random order and a group that would overshoot
    `k` is skipped, which reaches `k` exactly whenever the group sizes allow it.
    """
    if not 0 <= k <= len(items):
        raise DataError(f"cannot choose {k} of {len(items)} files: the raw data is incomplete; download it again.")
    groups: dict[Hashable, list[T]] = defaultdict(list)
    for index, item in enumerate(items):
        groups[group_of(item) if group_of else index].append(item)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    chosen: list[T] = []
    rest: list[T] = []
    for group in order:
        (chosen if len(chosen) + len(group) <= k else rest).extend(group)
    if len(chosen) != k:
        raise DataError(f"cannot choose exactly {k} files when duplicates must stay together (got {len(chosen)}).")
    position = {id(item): index for index, item in enumerate(items)}
    return sorted(chosen, key=lambda item: position[id(item)]), sorted(rest, key=lambda item: position[id(item)])
