"""The `maps/ts.npz` files of the fixture results set, made here rather than committed as binaries.

Four 32-pixel test images per run (two normal, two with a bright 45-pixel lesion and its mask) and a
smoothed anomaly map that peaks on the lesion, more sharply for PDD than for the re-run RD4AD, as `pdd evaluate`
writes them (layout: docs/architecture.md, Results).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 32
RUNS = {("headct", "rd4ad"): 0, ("headct", "full"): 1, ("zhanglab", "rd4ad"): 2, ("zhanglab", "full"): 3}
PATHS = ["test/good/000.png", "test/good/001.png", "test/hemorrhage/002.png", "test/hemorrhage/003.png"]
LABELS = np.array([0, 0, 1, 1], dtype=np.int64)


def _example(dataset: str, variant: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    head = ((yy - 16) ** 2 / 13**2 + (xx - 16) ** 2 / 11**2) <= 1.0
    images, masks, maps = [], [], []
    for label in LABELS:
        gray = np.where(head, 110.0, 5.0) + rng.normal(0.0, 6.0, (SIZE, SIZE))
        mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
        centre = np.array([12.0, 18.0]) + rng.integers(-2, 3, size=2)
        if label:
            mask[((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= 14] = 1  # 45 pixels
            gray[mask == 1] += 80.0
        width = 3.0 if variant == "full" else 6.0
        bump = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * width**2)) if label else 0.0
        maps.append((0.3 + 0.05 * rng.random((SIZE, SIZE)) + 0.8 * bump).astype(np.float32))
        images.append(np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=-1))
        masks.append(mask)
    maps_array = np.stack(maps)
    return {"images": np.stack(images), "masks": np.stack(masks), "maps": maps_array, "labels": LABELS,
            "paths": np.array(PATHS), "classes": np.array([dataset] * len(PATHS)),
            "scores": maps_array.max(axis=(1, 2)).astype(np.float32)}


def write_example_maps(results_root: Path) -> None:
    """Write `<dataset>/<variant>/code/seed0/maps/ts.npz` for the runs the localisation figures read."""
    for (dataset, variant), seed in RUNS.items():
        target = results_root / dataset / variant / "code" / "seed0" / "maps" / "ts.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez(target, **_example(dataset, variant, seed))
