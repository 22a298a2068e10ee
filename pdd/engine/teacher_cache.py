"""On-disk cache of frozen-teacher features, one file per image.

The teachers are frozen and training uses no augmentation, so an image's teacher features never
change: computing them once and reusing them in every epoch (and in every variant that shares the
teacher configuration) removes most of the cost of an epoch. Entries are keyed by the image's
sha256, the teacher fingerprint (weights sha256 or random-init seed) and the image size, so a cache
can never serve features of another image, teacher or resolution.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pdd.engine.checkpoint import UNREADABLE_ERRORS
from pdd.io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

Features = dict[str, torch.Tensor]


def cache_key(fingerprint: dict[str, Any], image_size: int, dtype: torch.dtype) -> str:
    description = {"teachers": fingerprint, "image_size": image_size, "dtype": str(dtype)}
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:20]


class TeacherFeatureCache:
    """Serves `teacher_features` for a batch, computing and storing only the images not seen before.

    With `dtype=torch.float16` entries take half the disk; every lookup (including the first one)
    returns the stored precision, so results do not depend on whether an entry was a hit or a miss.
    """

    def __init__(
        self, root: str | Path, fingerprint: dict[str, Any], image_size: int, dtype: torch.dtype = torch.float32
    ) -> None:
        self.dtype = dtype
        self.directory = Path(root) / cache_key(fingerprint, image_size, dtype)
        description = self.directory / "key.json"
        if not description.is_file():  # tells a human what the hashed directory holds
            atomic_write_json(
                description, {"teachers": fingerprint, "image_size": image_size, "dtype": str(dtype)}
            )
        self.hits = 0
        self.misses = 0

    def _entry(self, image_sha256: str) -> Path:
        return self.directory / image_sha256[:2] / f"{image_sha256}.pt"

    def _load(self, image_sha256: str) -> Features | None:
        path = self._entry(image_sha256)
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except UNREADABLE_ERRORS as exc:
            log.warning("teacher-cache entry %s is unreadable (%s); recomputing it", path, exc)
            return None

    def _store(self, image_sha256: str, features: Features) -> None:
        with atomic_path(self._entry(image_sha256)) as tmp, open(tmp, "wb") as handle:
            torch.save(features, handle)  # a file object: a full disk raises ENOSPC, not an opaque RuntimeError

    def features(
        self, compute: Callable[[torch.Tensor], Features], images: torch.Tensor, image_sha256s: Sequence[str]
    ) -> Features:
        """`compute(images)` for the whole batch, served from disk where possible (on `images.device`)."""
        if len(image_sha256s) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(image_sha256s)} sha256 keys")
        entries = [self._load(sha) for sha in image_sha256s]
        missing = [index for index, entry in enumerate(entries) if entry is None]
        self.hits += len(entries) - len(missing)
        self.misses += len(missing)
        if missing:
            # the full batch when nothing is cached, so a cold cache sees exactly the uncached computation
            batch = images if len(missing) == len(entries) else images[missing]
            with torch.no_grad():
                computed = compute(batch)
            for row, index in enumerate(missing):
                entry = {
                    name: _as_storage(value, row, len(missing), name, self.dtype) for name, value in computed.items()
                }
                self._store(image_sha256s[index], entry)
                entries[index] = entry
        return {
            name: _stack_in_layout([entry[name] for entry in entries]).to(images.device, torch.float32)
            for name in entries[0]
        }


def _as_storage(value: torch.Tensor, row: int, batch_size: int, name: str, dtype: torch.dtype) -> torch.Tensor:
    if value.shape[0] != batch_size:
        raise ValueError(f"teacher feature {name!r} has batch size {value.shape[0]}, expected {batch_size}")
    return value[row].detach().to("cpu", dtype).clone()


def _stack_in_layout(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """`torch.stack(rows)` in the rows' own memory layout (a plain stack is always contiguous).

    VMamba's taps are channels_last views, as the authors return them, and the convolutions and train-mode
    BN that read them round differently on a contiguous copy: a hit must give what the teachers gave.
    """
    outer_to_inner = sorted(range(rows[0].dim()), key=lambda dim: -rows[0].stride(dim))
    stacked = torch.stack([row.permute(outer_to_inner) for row in rows])
    return stacked.permute(0, *(1 + outer_to_inner.index(dim) for dim in range(rows[0].dim())))
