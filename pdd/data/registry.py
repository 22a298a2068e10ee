"""One entry per dataset: where the raw data comes from, how to check it, and how to prepare it.

``DATASETS[name]`` is the single source of truth used by ``pdd data download|prepare|status``
and by the synthetic demo (which stands in for each name). Licences and sizes are as published by
the source; see docs/data.md for the split protocols in prose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

from pdd.data.folder import FolderPreparer
from pdd.data.prepare import Assignment, Candidate, PrepareReport, Staged, prepare_dataset
from pdd.data.preparers import (
    BrainMRIPreparer,
    CheXpertPreparer,
    HeadCTPreparer,
    UniMedicalPreparer,
    ZhangLabPreparer,
)
from pdd.data.split import SplitRow
from pdd.errors import DataError
from pdd.io import sha256_file


class Preparer(Protocol):
    expected_layout: str
    per_class_tree: bool

    def locate(self, raw: Path) -> Path | None: ...
    def plan(self, root: Path, cls: str) -> tuple[list[Candidate], list[SplitRow]]: ...
    def assign(self, staged: Sequence[Staged], seed: int) -> list[Assignment]: ...


@dataclass(frozen=True)
class Source:
    """One way to obtain the raw data."""

    method: Literal["kaggle", "https", "manual"]
    location: str  # Kaggle dataset slug, archive URL, or the web page to download from by hand
    size: str
    sha256: str | None = None  # of the downloaded archive, when it is pinned
    filename: str = ""  # archive name to save as (https and manual)
    note: str = ""  # what the source holds or what to do with it

    def describe(self, raw: Path, name: str) -> str:
        if self.method == "kaggle":
            return (f"Kaggle dataset {self.location} ({self.size}): `pdd data download {name} --raw {raw}` "
                    f"(needs `pip install 'pdd[kaggle]'` and ~/.kaggle/kaggle.json), or download "
                    f"https://www.kaggle.com/datasets/{self.location} in a browser and unzip it into {raw}")
        checksum = f", sha256 {self.sha256}" if self.sha256 else ""
        target = f"save it as {raw / self.filename}{checksum} and extract it there" if self.filename else \
            f"extract it into {raw}"
        return f"{self.location} ({self.size}): {self.note + '; ' if self.note else ''}{target}"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    licence: str
    sources: tuple[Source, ...]
    preparer: Preparer
    protocol: str
    expected_counts: Mapping[str, int]
    manifest: str | None = None  # a JSON file in pdd/data/manifests: sha256 of every raw file
    classes: tuple[str, ...] = field(default=())
    # the CT window the source's images were exported with: what `pdd predict` applies to DICOM/NIfTI input
    # of a model trained on them, so new scans look like the training images
    ct_window: str | None = None

    def locate_raw(self, raw: str | Path) -> Path | None:
        return self.preparer.locate(Path(raw))

    def download_instructions(self, raw: str | Path) -> str:
        raw = Path(raw)
        routes = "\n".join(f"  {i}. {source.describe(raw, self.name)}" for i, source in enumerate(self.sources, 1))
        layout = "\n".join(f"    {line}" for line in self.preparer.expected_layout.splitlines())
        return (f"{self.title} ({self.name}) — get the raw data one of these ways:\n{routes}\n"
                f"  Expected layout:\n{layout}\n  Licence: {self.licence}")

    def prepare(self, raw: str | Path, out: str | Path, seed: int = 0,
                exclude_unreadable: bool = False) -> PrepareReport:
        """Prepare the raw download in `raw` into `out` (MVTec-style folders + split.csv)."""
        raw = Path(raw)
        root = self.locate_raw(raw)
        if root is None:
            if raw.is_dir() and any(raw.iterdir()):
                found = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in raw.iterdir())[:12])
                raise DataError(f"{raw} does not hold the expected {self.title} layout (found: {found}).\n"
                                f"{self.download_instructions(raw)}")
            raise DataError(f"no {self.title} raw data in {raw}.\n{self.download_instructions(raw)}")
        if self.manifest:
            self.verify_manifest(root)
        candidates, exclusions = self.preparer.plan(root, self.name)
        return prepare_dataset(out, candidates, exclusions, self.preparer.assign, seed=seed,
                               per_class_tree=self.preparer.per_class_tree, exclude_unreadable=exclude_unreadable,
                               description=f"preparing {self.name}")

    def manifest_hashes(self) -> dict[str, str]:
        text = resources.files("pdd.data").joinpath("manifests", self.manifest).read_text(encoding="utf-8")
        return json.loads(text)["files"]

    def verify_manifest(self, root: Path) -> None:
        """Compare every raw file with the published sha256; a difference means a bad or other copy."""
        problems = []
        for relative, expected in self.manifest_hashes().items():
            path = root / relative
            if not path.is_file():
                problems.append(f"{relative} is missing")
            elif sha256_file(path) != expected:
                problems.append(f"{relative} differs from the published file")
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise DataError(f"the {self.title} raw data in {root} fails its checksum manifest ({shown}). "
                            f"Download it again:\n{self.download_instructions(root)}")

    def protocol_mismatches(self, counts: Mapping[str, int]) -> list[str]:
        """Human-readable differences between prepared counts and the paper's protocol."""
        return [f"{key}: {counts.get(key, 0)} prepared, protocol expects {expected}"
                for key, expected in self.expected_counts.items() if counts.get(key, 0) != expected]


_RESEARCH_ONLY = "none stated by the source (images collected from the web); treat as research use only"

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(
        name="headct",
        title="HeadCT (brain hemorrhage CT)",
        licence=_RESEARCH_ONLY,
        sources=(Source("kaggle", "felipekitamura/head-ct-hemorrhage", "200 PNG, 26 MB"),),
        preparer=HeadCTPreparer(),
        protocol="100 normal (ids 100-199): seeded random 60 train / 40 test; all 100 hemorrhage (ids 0-99) in test.",
        expected_counts={"train": 60, "test/normal": 40, "test/anomalous": 100},
        manifest="headct.json",
        ct_window="brain",
    ),
    DatasetSpec(
        name="brainmri",
        title="BrainMRI (brain tumour MRI)",
        licence=_RESEARCH_ONLY,
        sources=(Source("kaggle", "navoneel/brain-mri-images-for-brain-tumor-detection", "253 images, 15 MB zip"),),
        preparer=BrainMRIPreparer(),
        protocol="98 normal: seeded random 58 train / 40 test (exact duplicates kept together); 154 tumour in test "
                 "after merging files that share a stem (Y92.jpg/Y92.png).",
        expected_counts={"train": 58, "test/normal": 40, "test/anomalous": 154},
    ),
    DatasetSpec(
        name="zhanglab",
        title="ZhangLab pediatric chest X-ray",
        licence="CC BY 4.0 (Kermany et al. 2018, Mendeley Data doi:10.17632/rscbjbr9sj)",
        sources=(
            Source("kaggle", "paultimothymooney/chest-xray-pneumonia", "5,856 JPEG, 2 GB zip"),
            Source("manual", "https://data.mendeley.com/datasets/rscbjbr9sj", "1.2 GB",
                   note="download ChestXRay2017.zip (the chest_xray/ folder)"),
            Source("manual", "https://drive.google.com/file/d/1kgYtvVvyfPnQnrPhhLt50ZK9SnxJpriC", "about 100 MB",
                   note="SQUID's re-split copy (train/normal_256, test/normal_256, test/pneumonia_256)"),
        ),
        preparer=ZhangLabPreparer(),
        protocol="SQUID split: 1,249 normal train (drawn by seed from the 1,341 official train normals when starting "
                 "from the original layout); official test 234 normal + 390 pneumonia.",
        expected_counts={"train": 1249, "test/normal": 234, "test/anomalous": 390},
    ),
    DatasetSpec(
        name="chexpert",
        title="CheXpert (SQUID re-split)",
        licence="Stanford CheXpert Research Use Agreement: registration required, no redistribution",
        sources=(
            Source("manual", "https://stanfordmlgroup.github.io/competitions/chexpert/", "11 GB (v1.0-small)",
                   note="accept the research-use agreement; then get SQUID's 256-px re-split "
                        "(https://drive.google.com/file/d/14pEg9ch0fsice29O8HOjnyJ7Zg4GYNXM) built from it"),
        ),
        preparer=CheXpertPreparer(),
        protocol="SQUID split: train 4,499 normal frontal images; test 250 normal + 250 abnormal.",
        expected_counts={"train": 4499, "test/normal": 250, "test/anomalous": 250},
    ),
    DatasetSpec(
        name="unimedical",
        title="Uni-Medical (BMAD brain/liver/retinal, ADer packaging)",
        licence="per source: BraTS2021 any use with citation; BTCV CC BY 4.0; LiTS CC BY-NC-SA; "
                "RESC research use only",
        sources=(
            Source("manual", "https://drive.google.com/file/d/1Q33X6UMS_2rfdOlHq-Levf7Df7z3tUKp", "several GB",
                   note="ADer's medical.zip (from ADer data/README.md); it unpacks to medical/ with meta.json"),
        ),
        preparer=UniMedicalPreparer(),
        protocol="splits and masks from ADer's meta.json; one tree per class.",
        expected_counts={"brain/train": 7500, "brain/test": 3715, "liver/train": 1542, "liver/test": 1493,
                         "retinal/train": 4297, "retinal/test": 1805},
        classes=("brain", "liver", "retinal"),
    ),
)}


def folder_dataset(name: str, root: str | Path, layout: str = "mvtec", csv_file: str | None = None,
                   normal_test_fraction: float = 0.4) -> DatasetSpec:
    """The spec of a user's own dataset (`data.datasets.<name>.kind: folder`): prepared like the paper's."""
    preparer = FolderPreparer(Path(root), layout, csv_file, normal_test_fraction)
    split = ("the tree's train/test folders" if layout == "mvtec" else
             f"the table's split column; unsplit normals: a seeded {normal_test_fraction:.0%} to test, "
             "unsplit anomalous images to test")
    return DatasetSpec(
        name=name, title=f"{name} (your {layout} folder {root})", licence="yours: pdd only reads it",
        sources=(Source("manual", str(root), "your data", note=f"put the images there in the {layout} layout"),),
        preparer=preparer, protocol=f"split from {split}", expected_counts={},
    )


def dataset_spec(name: str, entry: Any = None) -> DatasetSpec:
    """The spec of `name` as params define it (`entry`: its `data.datasets.<name>`), else the registry's."""
    if entry is not None and entry.kind == "folder":
        return folder_dataset(name, entry.root, entry.layout, entry.csv, entry.normal_test_fraction)
    return get_dataset(name)


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or define your own in "
                        f"params.yaml: data.datasets.{name}: {{kind: folder, root: ..., layout: mvtec|csv}} "
                        "(docs/data.md)") from None
