"""`PreparedDataset`: the torch view of a prepared dataset, driven by its split.csv.

Reading the file list from split.csv (not from a folder scan) means training and evaluation see
exactly the recorded split, in a fixed order, with the recorded sha256 of every file.

Preprocessing follows the reference code: images are read by `pdd.data.images.read_image`
(alpha composited on black, 16-bit stretched, ...), grayscale is replicated to 3 channels,
resized to ``image_size``² with bilinear interpolation (antialiased, as torchvision's Resize on
PIL images) and normalised with the ImageNet mean and std. Masks are resized with nearest
neighbour, so they stay binary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pdd.data.images import read_image, read_mask
from pdd.data.split import TEST, TRAIN, SplitRow, read_split_csv
from pdd.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Version of `model_pixels`: part of the key of every store of ready pixels (`pdd.data.pixel_store`), so that
#: a change of the decoding or resizing never reuses pixels made the old way. Bump it with any such change.
PREPROCESSING_VERSION = 1


def to_model_input(image: Image.Image, image_size: int) -> torch.Tensor:
    """The 3×S×S normalised tensor the teachers read, from a decoded (`read_image`) image.

    The one preprocessing of the project: training, evaluation and `pdd predict` all go through it, so a
    prediction on a prepared test image reproduces the evaluation's score. It is `normalised(model_pixels(...))`:
    training and evaluation keep the ready pixels of `model_pixels` (`pdd.data.pixel_store`) and normalise them
    as they load, which gives this very tensor."""
    return normalised(model_pixels(image, image_size))


def model_pixels(image: Image.Image, image_size: int) -> np.ndarray:
    """S×S×3 uint8: the decoded image in RGB, resized bilinearly (antialiased) to `image_size`²."""
    return np.asarray(image.convert("RGB").resize((image_size, image_size), Image.BILINEAR))


def normalised(pixels: np.ndarray) -> torch.Tensor:
    """The 3×S×S float32 model input from S×S×3 uint8 `model_pixels`: /255, then ImageNet mean and std.

    In numpy, on one thread: the same float32 operations as torch's (each rounded once), without handing a few
    hundred kilobytes to torch's intra-op threads, which the training step keeps busy (on two loaded cores that
    took 16 ms an image instead of 1). The result is a view in the pixels' memory order, as it always was."""
    scaled = np.asarray(pixels, dtype=np.float32) / 255.0
    return torch.from_numpy((scaled - _MEAN) / _STD).permute(2, 0, 1)


_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)


class PreparedDataset(Dataset):
    """Items: ``image`` (3×S×S), ``label``, ``mask`` (1×S×S), ``has_mask``, ``path``, ``sha256``, ``cls``.

    With `pixel_cache` (a folder; the engine passes ``<paths.cache>/pixels``) images and masks come from a store of
    ready pixels (`pdd.data.pixel_store`), built on first use: the same tensors, without decoding and resizing
    every image in every epoch.

    ``has_mask`` says whether the pixel ground truth is known: true for an image with a mask, and
    for a normal image of a class whose anomalous test images all have masks (its truth is all
    zeros). Pixel metrics should use only images with ``has_mask``.
    """

    def __init__(self, root: str | Path, split: str = TRAIN, image_size: int = 256,
                 classes: Sequence[str] | None = None, pixel_cache: str | Path | None = None):
        if split not in (TRAIN, TEST):
            raise DataError(f"split must be {TRAIN!r} or {TEST!r}, not {split!r}.")
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        all_rows = read_split_csv(self.root)
        rows = [row for row in all_rows if row.split == split]
        available = sorted({row.cls for row in rows})
        if classes is not None:
            unknown = sorted(set(classes) - set(available))
            if unknown:
                raise DataError(f"{self.root} has no {split} images of class {', '.join(unknown)}; "
                                f"its classes are {', '.join(available)}.")
            rows = [row for row in rows if row.cls in set(classes)]
        if not rows:
            raise DataError(f"{self.root} has no {split} images; prepare the dataset again.")
        self.rows: list[SplitRow] = rows
        self.pixels = None
        if pixel_cache is not None:  # decoded and resized once, for the whole split (all classes)
            from pdd.data.pixel_store import open_pixel_store

            split_rows = [row for row in all_rows if row.split == split]
            self.pixels = open_pixel_store(pixel_cache, self.root, split, split_rows, image_size)
        self.classes = sorted({row.cls for row in rows})
        anomalous = [row for row in all_rows if row.split == TEST and row.label == 1]
        self._annotated = {cls for cls in self.classes
                           if any(row.cls == cls for row in anomalous)
                           and all(row.mask for row in anomalous if row.cls == cls)}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> list[int]:
        return [int(row.label) for row in self.rows]

    @property
    def has_masks(self) -> list[bool]:
        """Each item's ``has_mask``, without loading images."""
        return [self._has_mask(row) for row in self.rows]

    def _has_mask(self, row: SplitRow) -> bool:
        return bool(row.mask) or (row.label == 0 and row.cls in self._annotated)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        size = (self.image_size, self.image_size)
        if self.pixels is not None:
            image, mask_pixels = normalised(self.pixels.image(row.path)), self.pixels.mask(row.path)
        else:
            image, mask_pixels = to_model_input(read_image(self.root / row.path), self.image_size), None
            if row.mask:
                mask_pixels = Image.fromarray(read_mask(self.root / row.mask)).resize(size, Image.NEAREST)
        # numpy, not torch: a few hundred kilobytes are not worth torch's intra-op threads (see `normalised`)
        mask = np.zeros(size, np.float32) if mask_pixels is None else np.asarray(mask_pixels, dtype=np.float32)
        return {
            "image": image,
            "label": int(row.label),
            "mask": torch.from_numpy(mask)[None],
            "has_mask": self._has_mask(row),
            "path": row.path,
            "sha256": row.sha256,
            "cls": row.cls,
        }
