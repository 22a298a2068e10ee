"""A user's own dataset from params alone: the mvtec and csv layouts prepare like the paper's datasets."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pdd.config import load_params
from pdd.data.registry import dataset_spec
from pdd.data.split import read_split_csv
from pdd.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _params(tmp_path: Path, entry: str):
    text = (REPO / "params.yaml").read_text()
    text = text.replace("    headct: {}\n", f"    headct: {{}}\n    mine: {entry}\n")
    file = tmp_path / "params.yaml"
    file.write_text(text)
    return file, load_params(file, overrides=[f"paths.prepared={tmp_path / 'prepared'}"])


def test_mvtec_tree_keeps_its_split_and_masks(tmp_path):
    root = tmp_path / "scans"
    for index in range(3):
        _png(root / "train/good" / f"n{index}.png", 10 + index)
    _png(root / "test/good/t0.png", 40)
    _png(root / "test/bleed/a0.png", 50)
    _png(root / "ground_truth/bleed/a0_mask.png", 255)
    _, params = _params(tmp_path, f"{{kind: folder, root: {root}}}")
    spec = dataset_spec("mine", params.dataset("mine"))
    report = spec.prepare(root, params.prepared_dir("mine"), seed=0)
    assert report.counts == {"train": 3, "test": 2, "test/normal": 1, "test/anomalous": 1}
    rows = {row.source: row for row in read_split_csv(params.prepared_dir("mine"))}
    assert rows["test/bleed/a0.png"].mask == "ground_truth/bleed/a0_mask.png"
    assert rows["test/bleed/a0.png"].path == "test/bleed/a0.png" and rows["train/good/n2.png"].split == "train"


def test_mvtec_class_folders_become_classes(tmp_path):
    root = tmp_path / "scans"
    for cls in ("brain", "liver"):
        _png(root / cls / "train/good/n.png", 10)
        _png(root / cls / "test/good/t.png", 20)
        _png(root / cls / "test/lesion/a.png", 30)
    spec = dataset_spec("mine", load_params(_params(tmp_path, f"{{kind: folder, root: {root}}}")[0]).dataset("mine"))
    report = spec.prepare(root, tmp_path / "out", seed=0)
    assert report.counts["brain/train"] == 1 and report.counts["liver/test/anomalous"] == 1
    assert (tmp_path / "out/liver/test/lesion/a.png").is_file()


def test_csv_layout_draws_unsplit_normals_by_seed_and_puts_anomalies_in_test(tmp_path):
    root = tmp_path / "scans"
    rows = [(f"img/n{index}.png", "normal", "") for index in range(10)] + [("img/a0.png", "1", ""),
                                                                             ("img/fixed.png", "0", "test")]
    for index, (path, _, _) in enumerate(rows):
        _png(root / path, index * 20)  # distinct pixels: no byte-identical pairs
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    _, params = _params(tmp_path, f"{{kind: folder, root: {root}, layout: csv, normal_test_fraction: 0.3}}")
    spec = dataset_spec("mine", params.dataset("mine"))
    first = spec.prepare(root, tmp_path / "a", seed=3).rows
    assert spec.prepare(root, tmp_path / "b", seed=3).rows == first, "the draw is reproducible"
    by_source = {row.source: row for row in first}
    assert by_source["img/a0.png"].split == "test" and by_source["img/fixed.png"].split == "test"
    drawn = [by_source[f"img/n{index}.png"].split for index in range(10)]
    assert drawn.count("train") == 7 and drawn.count("test") == 3
    draws = {frozenset(row.source for row in spec.prepare(root, tmp_path / f"s{seed}", seed=seed).rows
                       if row.split == "train") for seed in range(4)}
    assert len(draws) > 1, "the seed chooses which normals are held out"


def test_csv_problems_name_the_line(tmp_path):
    root = tmp_path / "scans"
    _png(root / "a.png", 1)
    (root / "labels.csv").write_text("path,label\na.png,maybe\n")
    spec = dataset_spec("mine", _params(tmp_path, f"{{kind: folder, root: {root}, layout: csv}}")[1].dataset("mine"))
    with pytest.raises(DataError, match="line 2: label 'maybe'"):
        spec.prepare(root, tmp_path / "out")
    (root / "labels.csv").write_text("path,label\nmissing.png,0\n")
    with pytest.raises(DataError, match="missing.png does not exist"):
        spec.prepare(root, tmp_path / "out")


def test_a_folder_dataset_needs_its_root_and_registry_ones_have_none(tmp_path):
    with pytest.raises(ConfigError, match="data.datasets.mine.root: a folder dataset needs root"):
        _params(tmp_path, "{kind: folder}")
    with pytest.raises(ConfigError, match="data.datasets.mine.root: only a folder dataset"):
        _params(tmp_path, "{root: /somewhere}")


def test_pdd_data_prepare_takes_everything_from_the_params(tmp_path):
    root = tmp_path / "scans"
    _png(root / "train/good/n.png", 10)
    _png(root / "test/good/t.png", 20)
    _png(root / "test/bleed/a.png", 30)
    file, params = _params(tmp_path, f"{{kind: folder, root: {root}}}")
    result = subprocess.run([sys.executable, "-m", "pdd", "data", "prepare", "mine", "--params", str(file),
                             "--set", f"paths.prepared={tmp_path / 'prepared'}"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert (params.prepared_dir("mine") / "split.csv").is_file()
    missing = subprocess.run([sys.executable, "-m", "pdd", "data", "download", "mine", "--params", str(file),
                              "--set", f"data.datasets.mine.root={tmp_path / 'nowhere'}"],
                             capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "nothing to download" in missing.stderr and "train/good" in missing.stderr
