"""The embedded synthetic demo set: speed, determinism, exact masks, per-class layout."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from pdd.data.split import TEST, read_split_csv
from pdd.data.synthetic import ANATOMIES, VARIANTS, generate, slice_rng, synthesize
from pdd.errors import DataError


def test_paper_sized_demo_set_is_generated_in_under_10_seconds(tmp_path):
    start = time.perf_counter()
    rows = generate(tmp_path / "headct", seed=0, n_train=60, n_test_normal=40, n_test_anomalous=40, size=256)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert len(rows) == 140
    assert {Image.open(tmp_path / "headct" / row.path).size for row in rows} == {(256, 256)}


def test_masks_cover_exactly_the_lesions(tmp_path):
    rows = generate(tmp_path / "d", seed=3, n_train=1, n_test_normal=1, n_test_anomalous=12, size=96)
    anomalous = [row for row in rows if row.label == 1]
    areas = []
    for index, row in enumerate(sorted(anomalous, key=lambda r: r.path)):
        regenerated = synthesize(slice_rng(3, "headct", "headct", TEST, True, index), 96, ANATOMIES["head"],
                                 VARIANTS["headct"].contrast)
        written = np.asarray(Image.open(tmp_path / "d" / row.path))
        mask = np.asarray(Image.open(tmp_path / "d" / row.mask)) > 0
        np.testing.assert_array_equal(written, regenerated.image)
        np.testing.assert_array_equal(mask, regenerated.image != regenerated.healthy)
        assert (regenerated.image[mask] > regenerated.healthy[mask]).all()  # hyperdense
        areas.append(mask.sum())
    assert min(areas) > 0 and max(areas) > 3 * min(areas)  # lesion sizes vary


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(tmp_path / name, seed=seed, n_train=3, n_test_normal=2, n_test_anomalous=2, size=64)
    assert (tmp_path / "a/split.csv").read_bytes() == (tmp_path / "b/split.csv").read_bytes()
    assert (tmp_path / "a/split.csv").read_bytes() != (tmp_path / "c/split.csv").read_bytes()
    first = [row.sha256 for row in read_split_csv(tmp_path / "a")]
    assert len(set(first)) == len(first)  # every image differs (per-image anatomical variation)


def test_each_dataset_name_gets_its_own_variant(tmp_path):
    hashes = {}
    for name in ("headct", "brainmri", "zhanglab", "chexpert"):
        rows = generate(tmp_path / name, seed=0, n_train=1, n_test_normal=1, n_test_anomalous=1, size=48, name=name)
        assert {row.cls for row in rows} == {name}
        assert {row.anomaly for row in rows if row.label} == {VARIANTS[name].anomaly}
        hashes[name] = rows[0].sha256
    assert len(set(hashes.values())) == 4


def test_unimedical_variant_has_per_class_trees(tmp_path):
    rows = generate(tmp_path / "u", seed=0, n_train=2, n_test_normal=1, n_test_anomalous=2, size=48, name="unimedical")
    assert {row.cls for row in rows} == {"brain", "liver", "retinal"}
    for row in rows:
        assert row.path.startswith(f"{row.cls}/{row.split}/")
        assert (tmp_path / "u" / row.path).is_file()
        if row.label:
            assert row.mask.startswith(f"{row.cls}/ground_truth/Ungood/")
    assert sorted(p.name for p in (tmp_path / "u").iterdir()) == ["brain", "liver", "retinal", "split.csv"]


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(DataError, match="no synthetic variant"):
        generate(tmp_path / "x", name="mvtec")
    with pytest.raises(DataError, match="--size"):
        generate(tmp_path / "x", size=8)
    assert not (tmp_path / "x").exists()
