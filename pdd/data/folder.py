"""A user's own dataset, defined in params.yaml alone: `data.datasets.<name>: {kind: folder, root: ..., layout: ...}`.

Two layouts cover what researchers bring:

* ``mvtec``: the anomaly-detection convention. ``train/good/*`` (normal training images),
  ``test/good/*`` and ``test/<anomaly>/*``, optional ``ground_truth/<anomaly>/<stem>_mask.png`` (or
  ``<stem>.png``). Several classes: one such tree per class folder under ``root``. The tree fixes the split.
* ``csv``: a table (``root/labels.csv`` or ``csv:``) with columns ``path,label`` and optionally ``mask``,
  ``split`` (train/test) and ``class``. Paths are relative to ``root``; labels are 0/1 or normal/anomalous.
  Rows without a split: every anomalous image goes to test and ``normal_test_fraction`` of the normals,
  drawn by seed as for HeadCT (byte-identical duplicates kept on one side).

All classes are prepared; `data.datasets.<name>.classes` chooses among them at training, as for Uni-Medical.
Preparation then runs through the same machinery as the paper's datasets (`pdd.data.prepare`): every file
decoded and hashed, split.csv written, unreadable files stopping the run or recorded as excluded.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pdd.data.prepare import Assignment, Candidate, Staged, image_files
from pdd.data.preparers import split_normals_seeded
from pdd.data.split import NORMAL, TEST, TRAIN, SplitRow
from pdd.errors import DataError

GOOD = "good"
CSV_DEFAULT = "labels.csv"
_LABELS = {"0": 0, "1": 1, "normal": 0, "good": 0, "anomalous": 1, "anomaly": 1, "abnormal": 1}


@dataclass(frozen=True)
class FolderPreparer:
    """Plans a user's folder (`layout` mvtec or csv) like the registry's preparers plan a download."""

    root: Path
    layout: str = "mvtec"
    csv_file: str | None = None
    normal_test_fraction: float = 0.4

    @property
    def expected_layout(self) -> str:
        if self.layout == "csv":
            return (f"{self.root}/\n  {self.csv_file or CSV_DEFAULT}   columns path,label[,mask][,split][,class]; "
                    "paths relative to the root")
        return (f"{self.root}/  (or one such tree per class folder)\n  train/good/*   test/good/*   "
                "test/<anomaly>/*   [ground_truth/<anomaly>/<stem>_mask.png]")

    @property
    def per_class_tree(self) -> bool:
        return len(self._class_roots()) > 1 if self.layout == "mvtec" else len(self._csv_classes()) > 1

    def locate(self, raw: Path) -> Path | None:
        if self.layout == "csv":
            return raw if self._csv_path(raw).is_file() else None
        return raw if self._class_roots(raw) else None

    def plan(self, root: Path, cls: str) -> tuple[list[Candidate], list[SplitRow]]:
        if self.layout == "csv":
            return self._plan_csv(root, cls), []
        candidates = []
        for name, tree in self._class_roots(root).items():
            candidates += self._plan_tree(root, tree, name if self.per_class_tree else cls)
        return candidates, []

    def assign(self, staged: Sequence[Staged], seed: int) -> list[Assignment]:
        pool = sum(1 for item in staged if item.candidate.split is None)
        return split_normals_seeded(staged, seed, train_normal=round(pool * (1 - self.normal_test_fraction)))

    # ---- mvtec --------------------------------------------------------------------------------------------------

    def _class_roots(self, root: Path | None = None) -> dict[str, Path]:
        """{class: its tree}: the root itself when it has train/good, else its class folders that do."""
        root = root or self.root
        if (root / TRAIN / GOOD).is_dir():
            return {"": root}
        if not root.is_dir():
            return {}
        return {child.name: child for child in sorted(root.iterdir())
                if child.is_dir() and (child / TRAIN / GOOD).is_dir()}

    def _plan_tree(self, root: Path, tree: Path, cls: str) -> list[Candidate]:
        candidates = [Candidate(path, path.relative_to(root).as_posix(), cls, 0, NORMAL, TRAIN)
                      for path in image_files(tree / TRAIN / GOOD)]
        test = tree / TEST
        if not test.is_dir():
            raise DataError(f"{tree} has train/good but no test/ folder; the mvtec layout needs test/good and "
                            "test/<anomaly> folders")
        for folder in sorted(child for child in test.iterdir() if child.is_dir() and not child.name.startswith(".")):
            label = 0 if folder.name == GOOD else 1
            for path in image_files(folder):
                mask = self._mask(tree, folder.name, path) if label else None
                candidates.append(Candidate(path, path.relative_to(root).as_posix(), cls, label,
                                            NORMAL if label == 0 else folder.name, TEST, mask))
        return candidates

    @staticmethod
    def _mask(tree: Path, anomaly: str, image: Path) -> Path | None:
        folder = tree / "ground_truth" / anomaly
        for name in (f"{image.stem}_mask", image.stem):
            found = [path for path in (folder.glob(f"{name}.*") if folder.is_dir() else []) if path.is_file()]
            if found:
                return sorted(found)[0]
        return None

    # ---- csv ----------------------------------------------------------------------------------------------------

    def _csv_path(self, root: Path | None = None) -> Path:
        return (root or self.root) / (self.csv_file or CSV_DEFAULT)

    def _csv_rows(self, root: Path | None = None) -> list[dict[str, str]]:
        path = self._csv_path(root)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            fields = {name.strip().lower() for name in reader.fieldnames or ()}
            if not {"path", "label"} <= fields:
                raise DataError(f"{path} needs the columns path and label (and optionally mask, split, class); "
                                f"its header is {reader.fieldnames}")
            return [{key.strip().lower(): (value or "").strip() for key, value in row.items() if key} for row in reader]

    def _csv_classes(self) -> list[str]:
        return sorted({row.get("class", "") for row in self._csv_rows()})

    def _plan_csv(self, root: Path, cls: str) -> list[Candidate]:
        multi_class = self.per_class_tree
        candidates = []
        for line, row in enumerate(self._csv_rows(root), start=2):
            where = f"{self._csv_path(root)} line {line}"
            label = _LABELS.get(row["label"].lower())
            if label is None:
                raise DataError(f"{where}: label {row['label']!r} is not one of {', '.join(_LABELS)}")
            split = row.get("split", "").lower() or None
            if split not in (None, TRAIN, TEST):
                raise DataError(f"{where}: split {row['split']!r} must be train, test or empty")
            if split == TRAIN and label:
                raise DataError(f"{where}: an anomalous image cannot be in train (the method trains on normals only)")
            path = root / row["path"]
            if not path.is_file():
                raise DataError(f"{where}: {path} does not exist")
            mask = root / row["mask"] if row.get("mask") else None
            if mask is not None and not mask.is_file():
                raise DataError(f"{where}: mask {mask} does not exist")
            name = row.get("class", "") if multi_class else cls
            candidates.append(Candidate(path, row["path"], name, label, NORMAL if label == 0 else "anomalous",
                                        TEST if label else split, mask))
        if not candidates:
            raise DataError(f"{self._csv_path(root)} lists no images")
        return candidates
