"""Ready pixels (`pdd.data.pixel_store`): the model inputs and masks of the decoding path, bit for bit, from a store
that is never stale and never half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pdd.data import pixel_store
from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD, PreparedDataset, to_model_input
from pdd.data.images import read_image
from pdd.data.prepare import Candidate, prepare_dataset
from tests.data.conftest import random_image, save

REPO_ROOT = Path(__file__).resolve().parents[2]
MODES = ["RGB", "RGBA", "L", "P", "RGB", "L", "RGBA"]  # train: the first 3; test: the rest, two with masks


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A prepared set of odd-sized RGB, RGBA, L and palette images, two test images with masks."""
    root = tmp_path_factory.mktemp("pixels")
    rng = np.random.default_rng(0)
    candidates = []
    for index, mode in enumerate(MODES):
        size = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
        source = save(random_image(rng, mode, size), root / "raw" / f"{index}.png", "PNG")
        mask = None
        if index in (4, 5):
            mask = save(Image.fromarray((rng.random(size[::-1]) > 0.7).astype(np.uint8) * 255), root / "raw" /
                        f"{index}_mask.png", "PNG")
        test = index >= 3
        candidates.append(Candidate(source, f"{index}.png", "mine", int(test and index != 3),
                                    "bad" if test and index != 3 else "good", "test" if test else "train", mask))
    prepare_dataset(root / "prepared", candidates)
    return root / "prepared"


def _earlier_model_input(image: Image.Image, size: int) -> torch.Tensor:
    """`to_model_input` as it was written before ready pixels (normalised in torch)."""
    resized = image.convert("RGB").resize((size, size), Image.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (pixels - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _stores(cache: Path) -> list[Path]:
    return sorted(path for path in cache.iterdir() if path.is_dir() and not path.name.startswith("."))


@pytest.mark.parametrize("size", [32, 48])
def test_ready_pixels_give_the_decoded_model_inputs_and_masks_bit_for_bit(prepared, tmp_path, size):
    for split in ("train", "test"):
        decoded = PreparedDataset(prepared, split, size)
        ready = PreparedDataset(prepared, split, size, pixel_cache=tmp_path)
        for index in range(len(decoded)):
            expected, item = decoded[index], ready[index]
            image = _earlier_model_input(read_image(prepared / item["path"]), size)
            assert torch.equal(item["image"], image) and item["image"].stride() == image.stride()
            assert torch.equal(to_model_input(read_image(prepared / item["path"]), size), image)
            assert torch.equal(item["image"], expected["image"]) and torch.equal(item["mask"], expected["mask"])
            assert item["has_mask"] == expected["has_mask"] and item["path"] == expected["path"]
    assert ready.has_masks == [False, True, True, False]
    assert [bool(item["mask"].sum()) for item in ready] == ready.has_masks
    assert len(_stores(tmp_path)) == 2, "one store per split"


def test_another_size_or_preprocessing_never_reads_a_store_made_for_another(prepared, tmp_path, monkeypatch):
    built = []
    real_build = pixel_store._build
    monkeypatch.setattr(pixel_store, "_build", lambda *args: built.append(args[-1]) or real_build(*args))
    PreparedDataset(prepared, "train", 32, pixel_cache=tmp_path)
    PreparedDataset(prepared, "train", 32, pixel_cache=tmp_path)
    PreparedDataset(prepared, "train", 64, pixel_cache=tmp_path)
    assert built == [32, 64]
    monkeypatch.setattr(pixel_store, "PREPROCESSING_VERSION", pixel_store.PREPROCESSING_VERSION + 1)
    assert PreparedDataset(prepared, "train", 32, pixel_cache=tmp_path)[0]["image"].shape == (3, 32, 32)
    assert built == [32, 64, 32] and len(_stores(tmp_path)) == 3


def test_a_changed_prepared_file_makes_the_store_again(prepared, tmp_path_factory, tmp_path):
    copy = tmp_path_factory.mktemp("changed") / "prepared"
    shutil.copytree(prepared, copy)
    store = PreparedDataset(copy, "train", 32, pixel_cache=tmp_path)
    path = copy / store.rows[1].path
    Image.fromarray(np.full((30, 40), 200, np.uint8)).save(path)
    changed = PreparedDataset(copy, "train", 32, pixel_cache=tmp_path)[1]["image"]
    assert torch.equal(changed, to_model_input(read_image(path), 32))


KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from pdd.data import pixel_store
    from pdd.data.dataset import PreparedDataset
    real, calls = pixel_store.read_image, []
    def read_then_die(path):
        calls.append(path)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # as a killed job: no clean-up
        return real(path)
    pixel_store.read_image = read_then_die
    PreparedDataset(sys.argv[1], "test", 32, pixel_cache=sys.argv[2])
""")


def test_a_build_killed_midway_is_never_read_and_its_leftover_goes(prepared, tmp_path):
    killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(prepared), str(tmp_path)], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert _stores(tmp_path) == [] and len(list(tmp_path.glob(".*.tmp"))) == 1, "killed inside the build"
    ready = PreparedDataset(prepared, "test", 32, pixel_cache=tmp_path)
    decoded = PreparedDataset(prepared, "test", 32)
    assert all(torch.equal(ready[i]["image"], decoded[i]["image"]) for i in range(len(decoded)))
    assert len(_stores(tmp_path)) == 1 and not list(tmp_path.glob(".*.tmp"))
