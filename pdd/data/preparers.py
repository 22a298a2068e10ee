"""Per-dataset knowledge: where the raw layout is, what each file is, and the split protocol.

Each preparer is a small frozen dataclass whose fields are the protocol's numbers (so a test can
run the real logic on a scaled-down fixture with `dataclasses.replace`). It answers three
questions, and `pdd.data.prepare.prepare_dataset` does the rest:

* `locate(raw)`: the folder holding the expected raw layout, searched a few levels deep because
  archives nest differently (``brain_tumor_dataset/``, ``chest_xray/chest_xray/``, ``medical/``);
* `plan(root)`: the candidate images with label, anomaly name and fixed split (if the layout has
  one), plus files excluded up front with their reason;
* `assign(staged, seed)`: the seeded split rule, run once every image has been decoded and hashed.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pdd.data.prepare import Assignment, Candidate, Staged, excluded_row, image_files, keep_fixed_splits
from pdd.data.split import EXCLUDED, NORMAL, TEST, TRAIN, SplitRow, seeded_subset
from pdd.errors import DataError

_SKIPPED_DIRS = {"__MACOSX"}


def find_layout_root(raw: Path, matches, max_depth: int = 3) -> Path | None:
    """The shallowest folder under `raw` (itself included) for which `matches(folder)` holds."""
    level = [raw] if raw.is_dir() else []
    for _ in range(max_depth + 1):
        for folder in level:
            if matches(folder):
                return folder
        level = [child for folder in level for child in sorted(folder.iterdir())
                 if child.is_dir() and not child.name.startswith(".") and child.name not in _SKIPPED_DIRS]
    return None


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def split_normals_seeded(staged: Sequence[Staged], seed: int, train_normal: int,
                         rest_split: str = TEST, rest_note: str = "") -> list[Assignment]:
    """Seeded draw of `train_normal` training images among the staged normals that have no fixed split.

    Byte-identical duplicates are drawn together so none straddles train and test. Everything with
    a fixed split keeps it; undrawn normals go to `rest_split`.
    """
    fixed = [item for item in staged if item.candidate.split is not None]
    pool = [item for item in staged if item.candidate.split is None]
    if any(item.candidate.label != 0 for item in pool):
        raise ValueError("only normal images can be drawn into the training split")
    train, rest = seeded_subset(pool, train_normal, seed, group_of=lambda item: item.source_sha256)
    twins = defaultdict(list)
    for item in staged:
        twins[item.source_sha256].append(item.candidate.source_rel)

    def duplicate_note(item: Staged) -> str:
        others = [name for name in twins[item.source_sha256] if name != item.candidate.source_rel]
        return f"byte-identical to {', '.join(others)}; duplicates share one split" if others else ""

    def note(item: Staged, extra: str = "") -> str:
        return "; ".join(text for text in (duplicate_note(item), extra) if text)

    return ([Assignment(item, item.candidate.split, note(item)) for item in fixed]
            + [Assignment(item, TRAIN, note(item)) for item in train]
            + [Assignment(item, rest_split, note(item, rest_note)) for item in rest])


class SeededNormalSplit:
    """Split rule of HeadCT and BrainMRI: `train_normal` normals drawn by seed, everything else in test."""

    train_normal: int

    def assign(self, staged: Sequence[Staged], seed: int) -> list[Assignment]:
        return split_normals_seeded(staged, seed, self.train_normal)


@dataclass(frozen=True)
class HeadCTPreparer(SeededNormalSplit):
    """``head_ct/NNN.png`` + ``labels.csv`` (header ``id, hemorrhage``): seeded 60/40 normals, hemorrhage in test."""

    train_normal: int = 60
    anomaly: str = "hemorrhage"
    expected_layout: ClassVar[str] = ("<raw>/\n  labels.csv            (header: id, hemorrhage)\n"
                                      "  head_ct/000.png ... 199.png")
    per_class_tree: ClassVar[bool] = False

    def locate(self, raw: Path) -> Path | None:
        return find_layout_root(raw, lambda d: (d / "labels.csv").is_file() and (d / "head_ct").is_dir())

    def plan(self, root: Path, cls: str) -> tuple[list[Candidate], list[SplitRow]]:
        labels = self._read_labels(root / "labels.csv")
        candidates, exclusions = [], []
        for path in image_files(root / "head_ct"):
            label = labels.pop(int(path.stem), None) if path.stem.isdigit() else None
            if label is None:
                exclusions.append(excluded_row(cls, _relative(path, root), "no entry in labels.csv", path))
                continue
            candidates.append(Candidate(path, _relative(path, root), cls, label,
                                        self.anomaly if label else NORMAL, TEST if label else None))
        if labels:
            missing = ", ".join(f"head_ct/{image_id:03d}.png" for image_id in sorted(labels)[:5])
            raise DataError(f"labels.csv lists {len(labels)} images missing from {root / 'head_ct'} "
                            f"(e.g. {missing}); the download is incomplete, fetch it again.")
        return candidates, exclusions

    @staticmethod
    def _read_labels(path: Path) -> dict[int, int]:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, skipinitialspace=True)
            fields = [name.strip() for name in reader.fieldnames or ()]
            if fields != ["id", "hemorrhage"]:
                raise DataError(f"{path} has header {reader.fieldnames}, expected 'id, hemorrhage'.")
            try:
                return {int(row[reader.fieldnames[0]]): int(row[reader.fieldnames[1]]) for row in reader}
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path} has a non-integer id or label ({exc}); download it again.") from exc



@dataclass(frozen=True)
class BrainMRIPreparer(SeededNormalSplit):
    """``no/`` and ``yes/`` (optionally under ``brain_tumor_dataset/``): seeded 58/40 normals, tumours in test.

    De-duplication rule (it reproduces the paper's 154 tumour images): the reference pipeline
    converted every file to ``<stem>.png``, so files of one class sharing a stem (case-insensitive)
    collapse into one. We keep the first by sorted file name (``Y92.jpg`` before ``Y92.png``) and
    record the others as excluded. Byte-identical duplicates with different stems are *kept* (the
    paper's 98 normals include them) but always land in the same split, so no test image has an
    identical twin in training.
    """

    train_normal: int = 58
    anomaly: str = "tumor"
    expected_layout: ClassVar[str] = ("<raw>/  (or <raw>/brain_tumor_dataset/)\n"
                                      "  no/   98 normal images (JPEG/PNG, e.g. '1 no.jpeg', N1.JPG)\n"
                                      "  yes/  155 tumour images (e.g. Y1.jpg, Y92.png)")
    per_class_tree: ClassVar[bool] = False

    def locate(self, raw: Path) -> Path | None:
        return find_layout_root(raw, lambda d: (d / "no").is_dir() and (d / "yes").is_dir())

    def plan(self, root: Path, cls: str) -> tuple[list[Candidate], list[SplitRow]]:
        candidates, exclusions = [], []
        for folder, label in (("no", 0), ("yes", 1)):
            kept: dict[str, Path] = {}
            for path in image_files(root / folder):
                first = kept.setdefault(path.stem.casefold(), path)
                if first is not path:
                    exclusions.append(excluded_row(
                        cls, _relative(path, root), f"same stem as {_relative(first, root)}: both become "
                        f"{path.stem}.png, so only the first by name is kept", path, label))
                    continue
                split = None if label == 0 else TEST
                candidates.append(Candidate(path, _relative(path, root), cls, label,
                                            NORMAL if label == 0 else self.anomaly, split))
        return candidates, exclusions



@dataclass(frozen=True)
class ZhangLabPreparer:
    """SQUID's re-split (``{train,test}/{normal_256,pneumonia_256}``) or the original Mendeley/Kaggle
    ``chest_xray/{train,test[,val]}/{NORMAL,PNEUMONIA}``.

    With the original layout SQUID's carve is redone with the seed: `train_normal` of the official
    training normals are drawn for training and the rest recorded as the held-out validation part.
    The official test split (234 normal + 390 pneumonia) is used unchanged in both layouts.
    """

    train_normal: int = 1249
    anomaly: str = "pneumonia"
    expected_layout: ClassVar[str] = ("<raw>/  SQUID re-split:           train/normal_256/, test/normal_256/, "
                                      "test/pneumonia_256/\n"
                                      "   or    original (Mendeley/Kaggle): chest_xray/train/{NORMAL,PNEUMONIA}/, "
                                      "chest_xray/test/{NORMAL,PNEUMONIA}/ [, chest_xray/val/]")
    per_class_tree: ClassVar[bool] = False

    @staticmethod
    def _is_squid(folder: Path) -> bool:
        return all((folder / sub).is_dir() for sub in ("train/normal_256", "test/normal_256", "test/pneumonia_256"))

    @staticmethod
    def _is_original(folder: Path) -> bool:
        return all((folder / sub).is_dir() for sub in ("train/NORMAL", "test/NORMAL", "test/PNEUMONIA"))

    def locate(self, raw: Path) -> Path | None:
        return find_layout_root(raw, lambda d: self._is_squid(d) or self._is_original(d))

    def plan(self, root: Path, cls: str) -> tuple[list[Candidate], list[SplitRow]]:
        squid = self._is_squid(root)
        normal, abnormal = ("normal_256", "pneumonia_256") if squid else ("NORMAL", "PNEUMONIA")
        used = {
            f"train/{normal}": (0, TRAIN if squid else None),
            f"test/{normal}": (0, TEST),
            f"test/{abnormal}": (1, TEST),
        }
        candidates, exclusions = [], []
        for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
            relative = _relative(folder, root)
            for path in image_files(folder):
                if relative not in used:
                    reason = ("abnormal training image: unused by the unsupervised protocol"
                              if relative.startswith("train/") else f"{relative} is not part of the protocol")
                    exclusions.append(excluded_row(cls, _relative(path, root), reason, path))
                    continue
                label, split = used[relative]
                candidates.append(Candidate(path, _relative(path, root), cls, label,
                                            self.anomaly if label else NORMAL, split))
        return candidates, exclusions

    def assign(self, staged: Sequence[Staged], seed: int) -> list[Assignment]:
        if all(item.candidate.split is not None for item in staged):
            return keep_fixed_splits(staged, seed)
        return split_normals_seeded(staged, seed, self.train_normal, rest_split=EXCLUDED,
                                    rest_note="held out as validation (SQUID's carve of the official train normals)")


@dataclass(frozen=True)
class CheXpertPreparer:
    """SQUID's re-split: ``train_256/normal_256`` and a test folder with ``normal_256`` + ``abnormal_256``."""

    anomaly: str = "abnormal"
    test_folders: tuple[str, ...] = ("test_256", "valid_256_pa", "val_256", "valid_256")
    expected_layout: ClassVar[str] = ("<raw>/\n  train_256/normal_256/        4,499 normal frontal images\n"
                                      "  test_256/normal_256/         250   (or valid_256_pa/, val_256/)\n"
                                      "  test_256/abnormal_256/       250")
    per_class_tree: ClassVar[bool] = False

    def _test_folder(self, root: Path) -> Path | None:
        return next((root / name for name in self.test_folders
                     if (root / name / "normal_256").is_dir() and (root / name / "abnormal_256").is_dir()), None)

    def locate(self, raw: Path) -> Path | None:
        return find_layout_root(raw, lambda d: (d / "train_256/normal_256").is_dir() and self._test_folder(d))

    def plan(self, root: Path, cls: str) -> tuple[list[Candidate], list[SplitRow]]:
        test = self._test_folder(root)
        parts = ((root / "train_256/normal_256", 0, TRAIN), (test / "normal_256", 0, TEST),
                 (test / "abnormal_256", 1, TEST))
        candidates = [Candidate(path, _relative(path, root), cls, label, self.anomaly if label else NORMAL, split)
                      for folder, label, split in parts for path in image_files(folder)]
        return candidates, []

    def assign(self, staged: Sequence[Staged], seed: int) -> list[Assignment]:
        return keep_fixed_splits(staged, seed)


@dataclass(frozen=True)
class UniMedicalPreparer:
    """ADer's ``medical/`` with ``meta.json`` (BMAD brain, liver, retinal), masks included.

    The splits come from meta.json. The anomaly folder name is the record's ``specie_name`` (e.g.
    ``Ungood``); training records marked anomalous are excluded, as the reference loader does.
    """

    classes: tuple[str, ...] = ("brain", "liver", "retinal")
    expected_layout: ClassVar[str] = ("<raw>/  (or <raw>/medical/)\n  meta.json   {\"train\"|\"test\": {class: "
                                      "[{img_path, mask_path, cls_name, specie_name, anomaly}]}}\n"
                                      "  brain/ liver/ retinal/   {train/good, test/good, test/<anomaly>, "
                                      "ground_truth/<anomaly>}")
    per_class_tree: ClassVar[bool] = True

    def locate(self, raw: Path) -> Path | None:
        return find_layout_root(raw, lambda d: (d / "meta.json").is_file()
                                and all((d / name).is_dir() for name in self.classes))

    def plan(self, root: Path, cls: str) -> tuple[list[Candidate], list[SplitRow]]:
        meta = self._read_meta(root / "meta.json")
        candidates, exclusions = [], []
        for split in (TRAIN, TEST):
            for name in self.classes:
                for record in meta[split].get(name, ()):
                    path = root / record["img_path"]
                    label = int(record["anomaly"])
                    if split == TRAIN and label:
                        exclusions.append(excluded_row(name, record["img_path"], "anomalous image listed for "
                                                       "training: unused by the unsupervised protocol", path, label))
                        continue
                    if not path.is_file():
                        raise DataError(f"{path} is listed in meta.json but missing; the download is incomplete.")
                    anomaly = record.get("specie_name") or ("anomalous" if label else NORMAL)
                    mask = root / record["mask_path"] if record.get("mask_path") else None
                    candidates.append(Candidate(path, record["img_path"], name, label,
                                                NORMAL if label == 0 else anomaly, split, mask))
        return candidates, exclusions

    def _read_meta(self, path: Path) -> dict:
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc}); download the Uni-Medical archive again.") from exc
        if not all(isinstance(meta.get(split), dict) for split in (TRAIN, TEST)):
            raise DataError(f"{path} lacks the 'train' and 'test' sections of an ADer meta.json; "
                            "download the Uni-Medical archive again.")
        missing = [name for name in self.classes if name not in meta[TEST]]
        if missing:
            raise DataError(f"{path} has no test records for {', '.join(missing)}; expected classes "
                            f"{', '.join(self.classes)}.")
        return meta

    def assign(self, staged: Sequence[Staged], seed: int) -> list[Assignment]:
        return keep_fixed_splits(staged, seed)
