"""Ready pixels: each image of a prepared split decoded and resized once, memory-mapped for every epoch.

Decoding a prepared PNG (HeadCT's are up to ~1,000 px) and resizing it costs ~15-30 ms per image on a CPU
core, and training did it again for every image in every epoch, in worker processes that compete with the
step for the same cores. A store keeps the result of `pdd.data.dataset.model_pixels` for every image of one
split of one prepared dataset at one image size: ``images.npy`` (N×S×S×3 uint8) and, for the images that
have one, ``masks.npy`` (M×S×S uint8 0/1, resized by nearest neighbour); epochs read them through
`numpy.load(mmap_mode="r")` and only normalise (`pdd.data.dataset.normalised`), so every model input is the
tensor `to_model_input` gives, bit for bit.

Where and when: ``<paths.cache>/pixels/<key>/``, built on first use (under a file lock: concurrent jobs
build it once) and then reused by every run of that dataset, split and image size. The key hashes the
prepared root, the split's rows (paths, sha256s of the prepared images, mask paths), the image size and
`PREPROCESSING_VERSION`, so another split, size or preprocessing never reads a store made for another;
``manifest.json`` records each file's size and modification time when it was read, and a store whose files
changed since (a re-prepared dataset, a `dvc checkout`) is rebuilt. A store is written in a temporary folder
and renamed into place whole, so a killed build leaves nothing that is read. Like the teacher-feature cache,
``<paths.cache>/pixels`` is safe to delete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np
from PIL import Image
from tqdm import tqdm

from pdd.data.dataset import PREPROCESSING_VERSION, model_pixels
from pdd.data.images import read_image, read_mask
from pdd.data.split import SplitRow

log = logging.getLogger(__name__)

STORE_FORMAT = "pdd-pixels/1"
IMAGES_FILE, MASKS_FILE, MANIFEST_FILE = "images.npy", "masks.npy", "manifest.json"


def store_key(root: Path, split: str, rows: Sequence[SplitRow], image_size: int) -> str:
    description = {"format": STORE_FORMAT, "preprocessing": PREPROCESSING_VERSION, "image_size": image_size,
                   "root": str(root.resolve()), "split": split,
                   "rows": [[row.path, row.sha256, row.mask] for row in rows]}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


def _stat(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


@dataclass
class PixelStore:
    """The ready pixels of one split; arrays are opened lazily in each process (a DataLoader worker maps its own)."""

    directory: Path
    rows: dict[str, int]  # prepared image path -> row of images.npy
    masks_of: dict[str, int]  # prepared image path -> row of masks.npy, for images with a mask
    _arrays: tuple[int, np.ndarray, np.ndarray | None] | None = None  # (pid, images, masks)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}  # memory maps are not pickled: each process opens its own

    def _open(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._arrays is None or self._arrays[0] != os.getpid():
            masks = self.directory / MASKS_FILE
            self._arrays = (os.getpid(), np.load(self.directory / IMAGES_FILE, mmap_mode="r"),
                            np.load(masks, mmap_mode="r") if masks.is_file() else None)
        return self._arrays[1], self._arrays[2]

    def image(self, path: str) -> np.ndarray:
        """S×S×3 uint8 `model_pixels` of the prepared image `path` (a read-only view)."""
        return self._open()[0][self.rows[path]]

    def mask(self, path: str) -> np.ndarray | None:
        """S×S uint8 (0/1) mask of `path`, or None when it has none."""
        if path not in self.masks_of:
            return None
        return self._open()[1][self.masks_of[path]]


def open_pixel_store(cache: str | Path, root: str | Path, split: str, rows: Sequence[SplitRow],
                     image_size: int) -> PixelStore:
    """The store of `rows` (one split of the prepared dataset at `root`, in order), built first if needed."""
    root = Path(root)
    directory = Path(cache) / store_key(root, split, rows, image_size)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(directory) + ".lock"):
        if not _is_current(directory, root, rows):
            _build(directory, root, split, rows, image_size)
    return PixelStore(directory, {row.path: index for index, row in enumerate(rows)},
                      {row.path: index for index, row in enumerate(row for row in rows if row.mask)})


def _is_current(directory: Path, root: Path, rows: Sequence[SplitRow]) -> bool:
    """Whether `directory` holds a complete store of `rows` whose source files have not changed since."""
    manifest_file = directory / MANIFEST_FILE
    if not manifest_file.is_file():
        return False
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        recorded = manifest["files"]
        if manifest.get("format") != STORE_FORMAT or len(recorded) != len(rows):
            raise ValueError(f"format {manifest.get('format')!r}, {len(recorded)} rows")
        for row, files in zip(rows, recorded, strict=True):
            if files != _files_of(root, row):
                log.info("ready pixels in %s: %s changed since they were made; making them again", directory,
                         row.path)
                return False
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ready pixels in %s are unreadable (%s); making them again", directory, exc)
        return False
    return True


def _files_of(root: Path, row: SplitRow) -> list[Any]:
    """What the store records of a row's files: paths with their size and modification time."""
    files: list[Any] = [row.path, _stat(root / row.path)]
    if row.mask:
        files += [row.mask, _stat(root / row.mask)]
    return files


def _build(directory: Path, root: Path, split: str, rows: Sequence[SplitRow], image_size: int) -> None:
    from pdd.data.prepare import atomic_directory

    masked = [row for row in rows if row.mask]
    size = (image_size, image_size)
    for leftover in directory.parent.glob(f".{directory.name}.*.tmp"):  # a killed build's; we hold the lock
        shutil.rmtree(leftover, ignore_errors=True)
    with atomic_directory(directory) as work:
        images = np.lib.format.open_memmap(work / IMAGES_FILE, mode="w+", dtype=np.uint8,
                                           shape=(len(rows), image_size, image_size, 3))
        masks = np.lib.format.open_memmap(work / MASKS_FILE, mode="w+", dtype=np.uint8,
                                          shape=(len(masked), image_size, image_size)) if masked else None
        files, mask_row = [], 0
        progress = tqdm(rows, desc=f"ready pixels, {root.name} {split} at {image_size}²", unit="img", disable=None,
                        leave=False)
        for index, row in enumerate(progress):
            files.append(_files_of(root, row))  # before reading: a file changed meanwhile makes the store stale
            images[index] = model_pixels(read_image(root / row.path), image_size)
            if row.mask:
                mask = Image.fromarray(read_mask(root / row.mask)).resize(size, Image.NEAREST)
                masks[mask_row] = np.asarray(mask, dtype=np.uint8)
                mask_row += 1
        for array in (images, masks):
            if array is not None:
                array.flush()
        del images, masks  # unmapped before the rename
        manifest = {"format": STORE_FORMAT, "root": str(root.resolve()), "split": split, "image_size": image_size,
                    "files": files}
        (work / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
        for path in work.iterdir():  # on disk before the rename makes the store visible
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    log.info("ready pixels of %s %s at %d² in %s (%d images, %d masks)", root, split, image_size, directory,
             len(rows), len(masked))
