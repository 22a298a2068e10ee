"""Builders of small raw datasets that reproduce each real download's layout and quirks."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pdd.data.registry import DATASETS


def random_image(rng: np.random.Generator, mode: str = "L", size: tuple[int, int] | None = None) -> Image.Image:
    width, height = size or (int(rng.integers(16, 28)), int(rng.integers(16, 28)))
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode if mode != "P" else "L"]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = np.where(pixels[..., 3] > 60, 255, 0)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode="L" if mode == "P" else mode)
    return image.convert("P") if mode == "P" else image


def save(image: Image.Image, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())
    return path


def make_headct(root: Path, seed: int = 0) -> Path:
    """``head_ct/000..199.png`` (188 RGB + 12 RGBA PNG) and ``labels.csv`` with the ``id, hemorrhage`` header."""
    rng = np.random.default_rng(seed)
    lines = ["id, hemorrhage"]
    for image_id in range(200):
        mode = "RGBA" if image_id % 17 == 0 else "RGB"
        save(random_image(rng, mode), root / "head_ct" / f"{image_id:03d}.png", "PNG")
        lines.append(f"{image_id},{int(image_id < 100)}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


# BrainMRI: (format, mode, count) per class, as measured on the Kaggle download
_BRAINMRI_FORMATS = {
    "no": [("JPEG", "RGB", 78), ("JPEG", "L", 13), ("PNG", "RGBA", 5), ("PNG", "RGB", 1), ("PNG", "P", 1)],
    "yes": [("JPEG", "RGB", 138), ("JPEG", "L", 16), ("PNG", "L", 1)],
}
# byte-identical duplicate groups: (copies per group, groups) -> 25 redundant files over 22 hashes
_BRAINMRI_DUPLICATES = {"no": [(2, 6), (3, 2)], "yes": [(2, 13), (3, 1)]}


def make_brainmri(root: Path, seed: int = 0) -> Path:
    """``no/`` (98) and ``yes/`` (155): mixed JPEG/PNG and modes, PNGs behind ``.jpg``, 25 exact duplicates,
    and both ``Y92.jpg`` and ``Y92.png``."""
    rng = np.random.default_rng(seed)
    normal_stems = ["{} no", "N{}", "No{}", "no {}"]
    normal_suffixes = [".jpeg", ".JPG", ".jpg", ".jpg"]
    for folder, formats in _BRAINMRI_FORMATS.items():
        kinds = [(fmt, mode) for fmt, mode, count in formats for _ in range(count)]
        jpegs, pngs, tumours = [], 0, 0
        for index, kind in enumerate(rng.permutation(len(kinds)), 1):
            fmt, mode = kinds[kind]
            if folder == "yes":
                tumours += fmt == "JPEG"
                name = "Y92.png" if fmt == "PNG" else f"Y{tumours}.{'JPG' if tumours % 9 == 0 else 'jpg'}"
            else:
                pngs += fmt == "PNG"
                suffix = normal_suffixes[index % 4] if fmt == "JPEG" else (".jpg" if pngs <= 2 else ".png")
                name = normal_stems[index % 4].format(index) + suffix
            path = save(random_image(rng, mode), root / folder / name, fmt)
            if fmt == "JPEG" and path.stem != "Y92":
                jpegs.append(path)
        # turn the last JPEGs into byte-identical copies of the first ones (other names, same bytes)
        originals, targets = iter(jpegs), iter(reversed(jpegs))
        for copies_per_group, groups in _BRAINMRI_DUPLICATES[folder]:
            for _ in range(groups):
                original = next(originals)
                for _ in range(copies_per_group - 1):
                    shutil.copyfile(original, next(targets))
    return root


def make_zhanglab(root: Path, layout: str, counts: dict[str, int], seed: int = 0) -> Path:
    """SQUID (``{train,test,val}/{normal_256,pneumonia_256}``) or original (``chest_xray/{...}/{NORMAL,PNEUMONIA}``)."""
    rng = np.random.default_rng(seed)
    names = {"normal": "normal_256", "pneumonia": "pneumonia_256"} if layout == "squid" else \
        {"normal": "NORMAL", "pneumonia": "PNEUMONIA"}
    base = root if layout == "squid" else root / "chest_xray" / "chest_xray"
    for key, count in counts.items():
        split, kind = key.split("/")
        for index in range(count):
            stem = f"IM-{index:04d}" if kind == "normal" else f"person{index}_bacteria_{index}"
            save(random_image(rng, "L"), base / split / names[kind] / f"{stem}.jpeg", "JPEG")
    if layout != "squid":
        (root / "__MACOSX" / "chest_xray").mkdir(parents=True)
    return root


def make_chexpert(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for folder, count in (("train_256/normal_256", n_train), ("valid_256_pa/normal_256", n_test),
                          ("valid_256_pa/abnormal_256", n_test)):
        for index in range(count):
            save(random_image(rng, "L", (32, 32)), root / folder / f"patient{index:05d}_view1_frontal.png", "PNG")
    return root


def make_unimedical(root: Path, counts: dict[str, tuple[int, int, int]], seed: int = 0) -> Path:
    """ADer ``medical/`` + ``meta.json``; counts per class: (train normal, test normal, test anomalous)."""
    rng = np.random.default_rng(seed)
    medical = root / "medical"
    meta: dict = {"train": {}, "test": {}}
    for cls, (n_train, n_good, n_bad) in counts.items():
        meta["train"][cls], meta["test"][cls] = [], []
        for split, specie, count in (("train", "good", n_train), ("test", "good", n_good), ("test", "Ungood", n_bad)):
            for index in range(count):
                image_path = f"{cls}/{split}/{specie}/{index:04d}.png"
                save(random_image(rng, "L", (24, 24)), medical / image_path, "PNG")
                mask_path = ""
                if specie != "good":
                    mask_path = f"{cls}/ground_truth/{specie}/{index:04d}.png"
                    mask = np.zeros((24, 24), np.uint8)
                    mask[4 + index % 8:12 + index % 8, 5:15] = 1 if index % 2 else 255  # both 0/1 and 0/255 masks
                    save(Image.fromarray(mask, mode="L"), medical / mask_path, "PNG")
                meta[split][cls].append({"img_path": image_path, "mask_path": mask_path, "cls_name": cls,
                                         "specie_name": specie, "anomaly": int(specie != "good")})
    (medical / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture
def spec_without_manifest():
    """Registry entries whose raw checksum manifest is dropped, so fixtures (not the real files) pass."""
    return lambda name, **preparer_fields: replace(
        DATASETS[name], manifest=None, preparer=replace(DATASETS[name].preparer, **preparer_fields))


@pytest.fixture
def raw_builders():
    return {"headct": make_headct, "brainmri": make_brainmri, "zhanglab": make_zhanglab,
            "chexpert": make_chexpert, "unimedical": make_unimedical, "save": save, "random_image": random_image}
