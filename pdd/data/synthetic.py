"""The embedded demo data: procedural head-CT-like slices with hyperdense lesions and exact masks.

The demo must run offline in minutes, so it cannot use the real datasets. Instead each dataset
name gets a synthetic stand-in written in the *prepared* layout (same folders, same split.csv),
so nothing downstream can tell it apart from a real prepared dataset.

A normal slice is an organ outline with per-image variation (position, size, rotation, wobbly
border), optional skull ring and ventricles, smooth tissue texture and fine noise. An anomalous
slice is the *same* slice plus 1-3 hyperdense lesions (irregular blobs of random size, elongation
and contrast) inside the tissue. The lesion brightness is added only where the mask is set and is
large enough to survive 8-bit rounding, so the mask is exactly the set of pixels that differ from
the healthy slice. Everything is drawn from ``numpy.random.default_rng([seed, ...])``: the same
seed gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pdd.data.images import mask_png_bytes, png_bytes
from pdd.data.prepare import atomic_directory
from pdd.data.split import NORMAL, SPLIT_FILE, TEST, TRAIN, SplitRow, write_split_csv
from pdd.errors import DataError

_TISSUE_MAX = 0.7  # headroom so a lesion never saturates to the healthy value
_MIN_LESION_DELTA = 0.06  # > 8-bit rounding, so every masked pixel really changes


@dataclass(frozen=True)
class Anatomy:
    """Shape and texture of one synthetic organ class."""

    aspect: float  # organ width / height
    skull: bool  # bright bone ring around the tissue (CT)
    ventricles: bool  # two dark fluid chambers near the centre
    layers: float  # amplitude of horizontal banding (retinal OCT-like), 0 for none
    tissue: float  # mean tissue intensity in [0, 1]


ANATOMIES = {
    "head": Anatomy(aspect=0.85, skull=True, ventricles=True, layers=0.0, tissue=0.42),
    "liver": Anatomy(aspect=1.35, skull=False, ventricles=False, layers=0.0, tissue=0.48),
    "retina": Anatomy(aspect=2.6, skull=False, ventricles=False, layers=0.12, tissue=0.4),
}


@dataclass(frozen=True)
class SyntheticVariant:
    """How the stand-in for one dataset differs from the others."""

    anomaly: str  # anomaly folder name, as the real prepared dataset uses
    stream: int  # keeps the random streams of different variants apart for the same seed
    contrast: tuple[float, float]  # lesion brightness range added to the tissue
    classes: tuple[tuple[str, str], ...]  # (class name, anatomy); the dataset name for single-class sets


VARIANTS = {
    "headct": SyntheticVariant("hemorrhage", 1, (0.22, 0.4), (("headct", "head"),)),
    "brainmri": SyntheticVariant("tumor", 2, (0.15, 0.3), (("brainmri", "head"),)),
    "zhanglab": SyntheticVariant("pneumonia", 3, (0.12, 0.25), (("zhanglab", "liver"),)),
    "chexpert": SyntheticVariant("abnormal", 4, (0.1, 0.2), (("chexpert", "liver"),)),
    "unimedical": SyntheticVariant("Ungood", 5, (0.15, 0.3),
                                   (("brain", "head"), ("liver", "liver"), ("retinal", "retina"))),
}
_ROLES = {(TRAIN, False): 0, (TEST, False): 1, (TEST, True): 2}


@dataclass(frozen=True)
class SyntheticSlice:
    image: np.ndarray  # uint8 H×W, with lesions when anomalous
    healthy: np.ndarray  # uint8 H×W, the same slice without lesions
    mask: np.ndarray  # bool H×W, True exactly where `image` differs from `healthy`


def slice_rng(seed: int, name: str, cls: str, split: str, anomalous: bool, index: int) -> np.random.Generator:
    """The random stream of one generated image (public so tests can regenerate any image)."""
    class_index = [c for c, _ in VARIANTS[name].classes].index(cls)
    return np.random.default_rng([seed, VARIANTS[name].stream, class_index, _ROLES[split, anomalous], index])


def synthesize(rng: np.random.Generator, size: int, anatomy: Anatomy,
               contrast: tuple[float, float] | None = None) -> SyntheticSlice:
    """One slice; with `contrast`, 1-3 lesions of that brightness range are added."""
    grid = np.linspace(-1.0, 1.0, size)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    healthy, interior = _healthy_slice(rng, size, x, y, anatomy)
    mask = np.zeros((size, size), dtype=bool)
    image = healthy
    if contrast is not None:
        delta = np.zeros_like(healthy)
        texture = np.clip(0.8 + 0.2 * rng.standard_normal(healthy.shape), 0.6, 1.0)
        for _ in range(rng.integers(1, 4)):
            blob = _lesion_blob(rng, x, y, interior)
            level = rng.uniform(*contrast) * texture
            delta = np.where(blob, np.maximum(delta, np.maximum(level, _MIN_LESION_DELTA)), delta)
            mask |= blob
        image = np.clip(healthy + delta, 0.0, 1.0)
    return SyntheticSlice(_to_uint8(image), _to_uint8(healthy), mask)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(image * 255.0).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Unit-scale noise that varies over about size/cells pixels (bicubic upsampling of a coarse grid)."""
    coarse = Image.fromarray(rng.standard_normal((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.float64)


def _rotated(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, centre, max_angle: float):
    angle = rng.uniform(-max_angle, max_angle)
    dx, dy = x - centre[0], y - centre[1]
    return np.cos(angle) * dx + np.sin(angle) * dy, -np.sin(angle) * dx + np.cos(angle) * dy


def _wobble(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, amplitude: float) -> np.ndarray:
    """Radial border perturbation from a few random angular harmonics."""
    theta = np.arctan2(v, u)
    return 1.0 + sum(rng.uniform(0, amplitude) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))


def _healthy_slice(rng, size, x, y, anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    centre = rng.uniform(-0.05, 0.05, size=2)
    height = rng.uniform(0.72, 0.84) / max(1.0, anatomy.aspect / 1.15)
    width = height * anatomy.aspect * rng.uniform(0.93, 1.07)
    u, v = _rotated(rng, x, y, centre, np.deg2rad(12))
    radius = np.sqrt((u / width) ** 2 + (v / height) ** 2) / _wobble(rng, u, v, 0.025)
    skull_width = rng.uniform(0.06, 0.1) if anatomy.skull else 0.0
    tissue_region = radius < 1.0 - skull_width

    grain = rng.standard_normal((size, size))  # fine noise; tissue, air, bone and fluid are disjoint so share it
    tissue = anatomy.tissue + 0.05 * _smooth_noise(rng, size, 8) + 0.02 * grain
    if anatomy.layers:
        phase = 0.15 * _smooth_noise(rng, size, 4)
        tissue += anatomy.layers * np.sin(2 * np.pi * (v / height * rng.uniform(2.5, 4.0) + phase))
    image = 0.02 + 0.01 * grain
    image = np.where(tissue_region, np.clip(tissue, 0.05, _TISSUE_MAX), np.clip(image, 0.0, 0.05))
    if anatomy.skull:
        bone = 0.88 + 0.05 * grain
        image = np.where((radius >= 1.0 - skull_width) & (radius < 1.0), np.clip(bone, 0.75, 0.98), image)
    interior = tissue_region & (radius < 0.8 - skull_width)
    if anatomy.ventricles:
        spread, length = rng.uniform(0.07, 0.14), rng.uniform(0.15, 0.28)
        for side in (-1, 1):
            cu, cv = side * spread * width, rng.uniform(-0.12, 0.02) * height
            chamber = ((u - cu) / (0.45 * spread * width)) ** 2 + ((v - cv) / (length * height)) ** 2 < 1.0
            image = np.where(chamber, np.clip(0.12 + 0.02 * grain, 0.05, 0.2), image)
            interior &= ~chamber
    return image, interior


def _lesion_blob(rng: np.random.Generator, x, y, interior: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(interior)
    if rows.size == 0:
        raise DataError("synthetic slice too small to hold a lesion; use a larger --size.")
    pick = rng.integers(rows.size)
    row, col = rows[pick], cols[pick]
    radius = rng.uniform(0.035, 0.14)
    elongation = rng.uniform(1.0, 2.2)
    # the blob fits in radius * elongation * max wobble (1.45): draw it in that window only
    reach = int(np.ceil(radius * elongation * 1.5 * (x.shape[0] - 1) / 2)) + 1
    window = np.s_[max(row - reach, 0):row + reach + 1, max(col - reach, 0):col + reach + 1]
    u, v = _rotated(rng, x[window], y[window], (x[row, col], y[row, col]), np.pi)
    distance = np.sqrt((u / (radius * elongation)) ** 2 + (v / radius) ** 2) / _wobble(rng, u, v, 0.15)
    blob = np.zeros_like(interior)
    blob[window] = (distance < 1.0) & interior[window]
    blob[row, col] = True  # the centre is interior; keeps sub-pixel lesions visible
    return blob


def generate(out: str | Path, seed: int = 0, n_train: int = 60, n_test_normal: int = 40,
             n_test_anomalous: int = 40, size: int = 256, name: str = "headct") -> list[SplitRow]:
    """Write the synthetic stand-in for dataset `name` into `out` as a prepared dataset (atomically)."""
    if name not in VARIANTS:
        raise DataError(f"no synthetic variant for {name!r}; choose one of {', '.join(VARIANTS)}.")
    if size < 32 or min(n_train, n_test_normal, n_test_anomalous) < 1:
        raise DataError("synthetic data needs --size >= 32 and at least one image per part.")
    variant = VARIANTS[name]
    per_class_tree = len(variant.classes) > 1
    rows = []
    with atomic_directory(out) as work:
        for cls, anatomy_name in variant.classes:
            prefix = f"{cls}/" if per_class_tree else ""
            for split, anomalous, count in ((TRAIN, False, n_train), (TEST, False, n_test_normal),
                                            (TEST, True, n_test_anomalous)):
                folder = variant.anomaly if anomalous else NORMAL
                for index in range(count):
                    rng = slice_rng(seed, name, cls, split, anomalous, index)
                    sample = synthesize(rng, size, ANATOMIES[anatomy_name], variant.contrast if anomalous else None)
                    path = f"{prefix}{split}/{folder}/{index:03d}.png"
                    digest = _write(work / path, png_bytes(Image.fromarray(sample.image, mode="L")))
                    mask = ""
                    if anomalous:
                        mask = f"{prefix}ground_truth/{folder}/{index:03d}_mask.png"
                        _write(work / mask, mask_png_bytes(sample.mask))
                    source = f"synthetic/{name}/seed{seed}/{path}"
                    rows.append(SplitRow(cls, split, int(anomalous), folder, path, digest, mask, source, digest,
                                         f"synthetic {anatomy_name} slice"))
        write_split_csv(rows, work / SPLIT_FILE)
    return rows


def _write(path: Path, data: bytes) -> str:
    """Write `data` to `path` and return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
