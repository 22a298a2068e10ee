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


def to_model_input(image: Image.Image, image_size: int) -> torch.Tensor:
    """The 3×S×S normalised tensor the teachers read, from a decoded (`read_image`) image.

    The one preprocessing of the project: training, evaluation and `pdd predict` all go through it, so a
    prediction on a prepared test image reproduces the evaluation's score."""
    resized = image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (pixels - _MEAN) / _STD


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


class PreparedDataset(Dataset):
    """Items: ``image`` (3×S×S), ``label``, ``mask`` (1×S×S), ``has_mask``, ``path``, ``sha256``, ``cls``.

    ``has_mask`` says whether the pixel ground truth is known: true for an image with a mask, and
    for a normal image of a class whose anomalous test images all have masks (its truth is all
    zeros). Pixel metrics should use only images with ``has_mask``.
    """

    def __init__(self, root: str | Path, split: str = TRAIN, image_size: int = 256,
                 classes: Sequence[str] | None = None):
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

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        size = (self.image_size, self.image_size)
        image = to_model_input(read_image(self.root / row.path), self.image_size)
        if row.mask:
            mask_image = Image.fromarray(read_mask(self.root / row.mask)).resize(size, Image.NEAREST)
            mask = torch.from_numpy(np.asarray(mask_image, dtype=np.float32))[None]
        else:
            mask = torch.zeros(1, *size)
        return {
            "image": image,
            "label": int(row.label),
            "mask": mask,
            "has_mask": bool(row.mask) or (row.label == 0 and row.cls in self._annotated),
            "path": row.path,
            "sha256": row.sha256,
            "cls": row.cls,
        }
