"""`PreparedDataset` items follow the contract in docs/architecture.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pdd.data import PreparedDataset
from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from pdd.data.synthetic import generate
from pdd.errors import DataError
from pdd.io import sha256_file


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate(root / "headct", seed=1, n_train=3, n_test_normal=2, n_test_anomalous=2, size=64)
    generate(root / "unimedical", seed=1, n_train=2, n_test_normal=1, n_test_anomalous=1, size=48, name="unimedical")
    return root


def test_items_match_the_contract(demo):
    dataset = PreparedDataset(demo / "headct", split="test", image_size=32)
    assert len(dataset) == 4 and dataset.labels == [0, 0, 1, 1]
    for item in dataset:
        assert set(item) == {"image", "label", "mask", "has_mask", "path", "sha256", "cls"}
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (1, 32, 32) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert item["cls"] == "headct" and item["sha256"] == sha256_file(demo / "headct" / item["path"])
        assert item["has_mask"]  # anomalous images have masks, so normal ones have known all-zero truth
        assert (item["mask"].sum() > 0) == (item["label"] == 1)


def test_grayscale_is_replicated_resized_bilinear_and_imagenet_normalised(demo):
    item = PreparedDataset(demo / "headct", split="train", image_size=40)[0]
    gray = Image.open(demo / "headct" / item["path"]).resize((40, 40), Image.BILINEAR)
    expected = np.asarray(gray, np.float32) / 255.0
    for channel in range(3):
        restored = item["image"][channel].numpy() * IMAGENET_STD[channel] + IMAGENET_MEAN[channel]
        np.testing.assert_allclose(restored, expected, atol=1e-5)


def test_train_split_and_class_filter(demo):
    train = PreparedDataset(demo / "unimedical", split="train", image_size=16)
    assert len(train) == 6 and set(train.labels) == {0}
    liver = PreparedDataset(demo / "unimedical", split="test", image_size=16, classes=["liver"])
    assert [item["cls"] for item in liver] == ["liver", "liver"]
    assert all(item["path"].startswith("liver/test/") for item in liver)
    with pytest.raises(DataError, match="no test images of class spleen"):
        PreparedDataset(demo / "unimedical", split="test", classes=["spleen"])


def test_not_a_prepared_dataset(tmp_path):
    with pytest.raises(DataError, match="pdd data prepare"):
        PreparedDataset(tmp_path, split="train")
    with pytest.raises(DataError, match="split must be"):
        PreparedDataset(tmp_path, split="val")


def test_dataset_without_masks(tmp_path, raw_builders, spec_without_manifest):
    raw = raw_builders["chexpert"](tmp_path / "raw", n_train=2, n_test=2)
    spec_without_manifest("chexpert").prepare(raw, tmp_path / "out")
    items = list(PreparedDataset(tmp_path / "out", split="test", image_size=16))
    assert [item["label"] for item in items] == [0, 0, 1, 1]
    assert not any(item["has_mask"] for item in items)
    assert all(item["mask"].sum() == 0 and item["cls"] == "chexpert" for item in items)
