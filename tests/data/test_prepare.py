"""Preparing each dataset from a fixture that reproduces its raw layout: counts, split rules, split.csv."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pdd.data.prepare as prepare_module
from pdd.data.prepare import count_rows, verify_prepared
from pdd.data.registry import DATASETS
from pdd.data.split import EXCLUDED, TEST, TRAIN, read_split_csv
from pdd.errors import DataError
from pdd.io import sha256_file


def _prepared_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.png")}


def _check_consistent(root: Path) -> list:
    """split.csv and the folder agree file for file, and every recorded sha256 is right."""
    rows = read_split_csv(root)
    listed = {row.path for row in rows if row.path} | {row.mask for row in rows if row.mask}
    assert listed == _prepared_files(root)
    assert verify_prepared(root) == []
    for row in rows:
        if row.split != EXCLUDED:
            assert Image.open(root / row.path).mode in ("L", "RGB")
            assert row.path.split("/")[-2] == row.anomaly
    return rows


def test_headct_fixture_gives_60_40_100_and_seed_reproducible(tmp_path, raw_builders, spec_without_manifest):
    raw = raw_builders["headct"](tmp_path / "raw")
    spec = spec_without_manifest("headct")
    report = spec.prepare(raw, tmp_path / "a", seed=7)
    assert report.counts == {"train": 60, "test": 140, "test/normal": 40, "test/anomalous": 100}
    assert spec.protocol_mismatches(report.counts) == []
    rows = _check_consistent(tmp_path / "a")
    assert {int(Path(row.source).stem) for row in rows if row.split == TRAIN} <= set(range(100, 200))
    assert {row.anomaly for row in rows if row.label == 1} == {"hemorrhage"}
    # RGBA sources are composited and stored as grayscale, with their source sha256 recorded
    for row in rows:
        assert row.source_sha256 == sha256_file(raw / row.source)

    spec.prepare(raw, tmp_path / "b", seed=7)
    spec.prepare(raw, tmp_path / "c", seed=8)
    split_a = (tmp_path / "a/split.csv").read_bytes()
    assert split_a == (tmp_path / "b/split.csv").read_bytes()
    train_c = {row.source for row in read_split_csv(tmp_path / "c") if row.split == TRAIN}
    assert train_c != {row.source for row in rows if row.split == TRAIN}


def test_headct_manifest_rejects_a_copy_that_differs(tmp_path, raw_builders):
    raw = raw_builders["headct"](tmp_path / "raw")
    with pytest.raises(DataError, match="checksum manifest"):
        DATASETS["headct"].prepare(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_brainmri_quirks_give_58_40_154(tmp_path, raw_builders, spec_without_manifest):
    raw = raw_builders["brainmri"](tmp_path / "raw")
    report = spec_without_manifest("brainmri").prepare(raw, tmp_path / "out", seed=0)
    assert report.counts == {"train": 58, "test": 194, "test/normal": 40, "test/anomalous": 154, "excluded": 1}
    rows = _check_consistent(tmp_path / "out")
    (excluded,) = [row for row in rows if row.split == EXCLUDED]
    assert excluded.source == "yes/Y92.png" and "yes/Y92.jpg" in excluded.note and excluded.source_sha256

    # exact duplicates are kept (the paper's 98 normals include them) but never straddle train and test
    splits_by_hash = defaultdict(set)
    for row in rows:
        if row.split != EXCLUDED:
            splits_by_hash[row.source_sha256].add(row.split)
    assert sum(1 for row in rows if "byte-identical" in row.note) == 25 + 22
    assert all(len(splits) == 1 for splits in splits_by_hash.values())
    # format detected from content, whatever the suffix says
    assert sum("content is PNG despite the .jpg suffix" in row.note for row in rows) == 2


def test_brainmri_accepts_the_nested_kaggle_copy(tmp_path, raw_builders, spec_without_manifest):
    raw_builders["brainmri"](tmp_path / "raw" / "brain_tumor_dataset")
    report = spec_without_manifest("brainmri").prepare(tmp_path / "raw", tmp_path / "out", seed=1)
    assert report.counts["test/anomalous"] == 154
    assert all(row.source.startswith(("no/", "yes/")) for row in report.rows)


def test_zhanglab_squid_layout_keeps_its_split(tmp_path, raw_builders, spec_without_manifest):
    counts = {"train/normal": 12, "test/normal": 5, "test/pneumonia": 7, "val/normal": 2}
    raw = raw_builders["zhanglab"](tmp_path / "raw", "squid", counts)
    report = spec_without_manifest("zhanglab").prepare(raw, tmp_path / "out")
    assert report.counts == {"train": 12, "test": 12, "test/normal": 5, "test/anomalous": 7, "excluded": 2}
    _check_consistent(tmp_path / "out")


def test_zhanglab_original_layout_redoes_squids_carve(tmp_path, raw_builders, spec_without_manifest):
    counts = {"train/normal": 14, "train/pneumonia": 4, "test/normal": 5, "test/pneumonia": 7,
              "val/normal": 2, "val/pneumonia": 2}
    raw = raw_builders["zhanglab"](tmp_path / "raw", "original", counts)
    spec = spec_without_manifest("zhanglab", train_normal=12)
    report = spec.prepare(raw, tmp_path / "out", seed=3)
    assert report.counts == {"train": 12, "test": 12, "test/normal": 5, "test/anomalous": 7, "excluded": 10}
    rows = _check_consistent(tmp_path / "out")
    held_out = [row for row in rows if "validation" in row.note]
    assert len(held_out) == 2 and all(row.source.startswith("train/NORMAL/") for row in held_out)
    assert sum("abnormal training image" in row.note for row in rows) == 4
    assert spec.protocol_mismatches(report.counts)  # a scaled fixture is flagged against the paper's 1,249


def test_chexpert_squid_layout(tmp_path, raw_builders, spec_without_manifest):
    raw = raw_builders["chexpert"](tmp_path / "raw", n_train=9, n_test=4)
    report = spec_without_manifest("chexpert").prepare(raw, tmp_path / "out")
    assert report.counts == {"train": 9, "test": 8, "test/normal": 4, "test/anomalous": 4}
    rows = _check_consistent(tmp_path / "out")
    assert {row.anomaly for row in rows if row.label} == {"abnormal"}


def test_unimedical_per_class_trees_with_masks(tmp_path, raw_builders, spec_without_manifest):
    counts = {"brain": (6, 3, 4), "liver": (5, 2, 3), "retinal": (4, 2, 2)}
    raw = raw_builders["unimedical"](tmp_path / "raw", counts)
    meta_path = raw / "medical" / "meta.json"
    meta = json.loads(meta_path.read_text())
    leaked = dict(meta["test"]["liver"][-1])
    meta["train"]["liver"].append(leaked)  # an anomalous image listed for training must be excluded
    meta_path.write_text(json.dumps(meta))
    report = spec_without_manifest("unimedical").prepare(raw, tmp_path / "out")
    assert report.counts == {
        "brain/test": 7, "brain/test/anomalous": 4, "brain/test/normal": 3, "brain/train": 6,
        "liver/test": 5, "liver/test/anomalous": 3, "liver/test/normal": 2, "liver/train": 5,
        "retinal/test": 4, "retinal/test/anomalous": 2, "retinal/test/normal": 2, "retinal/train": 4,
        "excluded": 1,
    }
    rows = _check_consistent(tmp_path / "out")
    assert {row.cls for row in rows} == {"brain", "liver", "retinal"}
    for row in rows:
        if row.split == EXCLUDED:
            continue
        assert row.path.startswith(f"{row.cls}/{row.split}/")
        assert bool(row.mask) == bool(row.label)
        if row.mask:
            assert row.mask.startswith(f"{row.cls}/ground_truth/Ungood/")
            mask = np.asarray(Image.open(tmp_path / "out" / row.mask))
            assert set(np.unique(mask)) == {0, 255} and (mask == 255).sum() == 80  # 0/1 and 0/255 masks alike


def test_missing_raw_data_fails_with_download_instructions(tmp_path):
    with pytest.raises(DataError) as error:
        DATASETS["brainmri"].prepare(tmp_path / "nothing", tmp_path / "out")
    message = str(error.value)
    assert "navoneel/brain-mri-images-for-brain-tumor-detection" in message and "yes/" in message
    with pytest.raises(DataError, match="accept the research-use agreement"):
        DATASETS["chexpert"].prepare(tmp_path / "nothing", tmp_path / "out")


def test_unexpected_layout_shows_the_expected_one(tmp_path):
    (tmp_path / "raw" / "images").mkdir(parents=True)
    with pytest.raises(DataError) as error:
        DATASETS["headct"].prepare(tmp_path / "raw", tmp_path / "out")
    assert "found: images/" in str(error.value) and "labels.csv" in str(error.value)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_unreadable_image_is_named_or_excluded_and_recorded(tmp_path, raw_builders, spec_without_manifest):
    raw = raw_builders["headct"](tmp_path / "raw")
    _truncate(raw / "head_ct" / "150.png")
    spec = spec_without_manifest("headct")
    with pytest.raises(DataError, match=r"head_ct/150\.png.*--exclude-unreadable"):
        spec.prepare(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    report = spec.prepare(raw, tmp_path / "out", exclude_unreadable=True)
    assert report.counts == {"train": 60, "test": 139, "test/normal": 39, "test/anomalous": 100, "excluded": 1}
    (excluded,) = [row for row in report.rows if row.split == EXCLUDED]
    assert excluded.source == "head_ct/150.png" and excluded.note.startswith("unreadable:")


def test_interrupted_prepare_never_leaves_a_complete_looking_dataset(tmp_path, raw_builders, spec_without_manifest,
                                                                     monkeypatch):
    raw = raw_builders["headct"](tmp_path / "raw")
    spec = spec_without_manifest("headct")
    spec.prepare(raw, tmp_path / "out", seed=0)
    before = (tmp_path / "out" / "split.csv").read_bytes()

    calls = {"n": 0}
    real_read = prepare_module.read_image

    def dies_halfway(path):
        calls["n"] += 1
        if calls["n"] % 120 == 0:
            raise KeyboardInterrupt
        return real_read(path)

    monkeypatch.setattr(prepare_module, "read_image", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        spec.prepare(raw, tmp_path / "out", seed=5)
    with pytest.raises(KeyboardInterrupt):
        spec.prepare(raw, tmp_path / "fresh", seed=5)
    assert sorted(os.listdir(tmp_path)) == ["out", "raw"]  # no temp folders, no half-made "fresh"
    assert (tmp_path / "out" / "split.csv").read_bytes() == before
    assert count_rows(read_split_csv(tmp_path / "out"))["train"] == 60


def test_verify_prepared_detects_tampering(tmp_path):
    from pdd.data.synthetic import generate

    generate(tmp_path / "d", seed=0, n_train=2, n_test_normal=1, n_test_anomalous=1, size=32)
    assert verify_prepared(tmp_path / "d") == []
    (tmp_path / "d" / "train/good/000.png").write_bytes(b"not the same")
    (tmp_path / "d" / "test/good/000.png").unlink()
    assert sorted(verify_prepared(tmp_path / "d")) == ["test/good/000.png is missing",
                                                         "train/good/000.png differs from its recorded sha256"]
    assert read_split_csv(tmp_path / "d")[0].split in (TRAIN, TEST)
