"""On-disk cache of frozen-teacher features, in memory-mapped safetensors shards.

The teachers are frozen and training uses no augmentation, so an image's teacher features never
change: computing them once and reusing them in every epoch (and in every variant that shares the
teacher configuration) removes most of the cost of an epoch. A cache directory is keyed by the teacher
fingerprint (weights sha256 or random-init seed), the image size and the storage dtype; inside it every
image's features are named by the image's sha256, so a cache can never serve features of another image,
teacher or resolution.

Layout: ``<root>/<key>/shard-<id>.safetensors``, one shard per batch of images computed together (HeadCT's
200 images take 20 shards at batch 10). Each tensor is ``<image sha256>/<feature name>``, stored in the
memory order the teachers produced it (VMamba's taps are channels_last views): the shard's metadata records
each feature's dimension order, so a hit returns the batch in the same layout as a miss, bit for bit. Shards
are memory-mapped (safetensors' `safe_open`: a read is one copy from the page cache into the batch, where
the earlier format unpickled one file per image per epoch), written atomically (a kill mid-write leaves a
``.shard-*.tmp`` that is never read, and deleted by a later process once it is an hour old) and named by
the images they hold, so two processes computing the same batch write the same file. A shard that cannot
be opened is skipped with a warning and its images computed again. Entries of the earlier per-image format
(``<key>/<sha[:2]>/<sha256>.pt``) are moved into shards as they are first read, and never recomputed. The
whole cache is safe to delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from pdd.engine.checkpoint import UNREADABLE_ERRORS
from pdd.io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

Features = dict[str, torch.Tensor]
SHARD_FORMAT = "pdd-teacher-features/2"
_SHARD_GLOB = "shard-*.safetensors"
STALE_TEMPORARY_S = 3600  # a temporary shard this old was left by a killed process


def cache_key(fingerprint: dict[str, Any], image_size: int, dtype: torch.dtype) -> str:
    description = {"teachers": fingerprint, "image_size": image_size, "dtype": str(dtype)}
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:20]


def memory_order(value: torch.Tensor) -> list[int]:
    """The dimensions of `value` from the outermost to the innermost in memory (by stride)."""
    return sorted(range(value.dim()), key=lambda dim: -value.stride(dim))


class TeacherFeatureCache:
    """Serves `teacher_features` for a batch, computing and storing only the images not seen before.

    With `dtype=torch.float16` entries take half the disk; every lookup (including the first one)
    returns the stored precision, so results do not depend on whether an entry was a hit or a miss.
    """

    def __init__(
        self, root: str | Path, fingerprint: dict[str, Any], image_size: int, dtype: torch.dtype = torch.float32
    ) -> None:
        self.dtype = dtype
        self.key = cache_key(fingerprint, image_size, dtype)
        self.directory = Path(root) / self.key
        description = self.directory / "key.json"
        if not description.is_file():  # tells a human what the hashed directory holds
            atomic_write_json(
                description, {"teachers": fingerprint, "image_size": image_size, "dtype": str(dtype)}
            )
        self.hits = 0
        self.misses = 0
        self._shards: dict[str, Any] = {}  # shard file name -> open safetensors handle (None: unreadable)
        self._orders: dict[str, dict[str, list[int]]] = {}  # shard file name -> feature -> memory order
        self._where: dict[str, str] = {}  # image sha256 -> shard file name
        self._scan()
        self._remove_stale_temporaries()
        legacy = sum(1 for _ in self.directory.glob("??/*.pt"))
        if legacy:
            log.info("teacher-feature cache %s holds %d entries of the earlier per-image format; each moves into "
                     "a shard when it is first read (the cache is safe to delete)", self.directory, legacy)

    # ---- the shards on disk --------------------------------------------------------------------

    def _scan(self) -> None:
        """Index the shards not indexed yet (other processes may have written some since)."""
        for path in sorted(self.directory.glob(_SHARD_GLOB)):
            if path.name not in self._shards:
                self._index(path)

    def _remove_stale_temporaries(self) -> None:
        """Delete what killed writes left (`.shard-*.tmp`, never read); only old ones, since another live process
        may be writing one right now (a shard takes seconds)."""
        for path in self.directory.glob(".shard-*.tmp"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > STALE_TEMPORARY_S:
                    path.unlink()
                    log.info("removed %s, left by an interrupted write", path)

    def _index(self, path: Path) -> None:
        from safetensors import safe_open

        try:
            handle = safe_open(str(path), framework="pt", device="cpu")
            metadata = handle.metadata() or {}
            if metadata.get("format") != SHARD_FORMAT or metadata.get("key") != self.key:
                raise ValueError(f"format {metadata.get('format')!r}, key {metadata.get('key')!r}")
            images, orders = json.loads(metadata["images"]), json.loads(metadata["orders"])
            names = set(handle.keys())
            if any(f"{sha}/{name}" not in names for sha in images for name in orders):
                raise ValueError("entries missing")
        except Exception as exc:  # safetensors raises its own error types for damaged files
            log.warning("teacher-cache shard %s is unreadable (%s); its images are computed again", path, exc)
            self._shards[path.name] = None
            return
        self._shards[path.name], self._orders[path.name] = handle, orders
        for sha in images:
            self._where.setdefault(sha, path.name)

    def _read(self, image_sha256: str, name: str) -> torch.Tensor:
        """The stored tensor in its logical dimension order (a view of the memory-mapped shard)."""
        shard = self._where[image_sha256]
        stored = self._shards[shard].get_tensor(f"{image_sha256}/{name}")
        order = self._orders[shard][name]
        return stored.permute(*(order.index(dim) for dim in range(stored.dim())))

    def _store(self, entries: dict[str, Features]) -> None:
        """Write one shard holding `entries` ({image sha256: features}), atomically, and index it."""
        from safetensors.torch import save

        first = next(iter(entries.values()))
        orders = {name: memory_order(value) for name, value in first.items()}
        tensors = {f"{sha}/{name}": value.permute(*orders[name]).contiguous()
                   for sha, features in entries.items() for name, value in features.items()}
        shas = sorted(entries)
        payload = save(tensors, metadata={"format": SHARD_FORMAT, "key": self.key, "images": json.dumps(shas),
                                          "orders": json.dumps(orders)})
        path = self.directory / f"shard-{hashlib.sha256(''.join(shas).encode()).hexdigest()[:24]}.safetensors"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            handle.write(payload)  # a file object: a full disk raises ENOSPC, not an opaque error
        self._shards.pop(path.name, None)  # rewritten (it was unreadable, or another process wrote it meanwhile)
        self._index(path)

    def _legacy(self, image_sha256: str) -> tuple[Path, Features] | None:
        """An entry of the earlier per-image format, if one is present and readable."""
        path = self.directory / image_sha256[:2] / f"{image_sha256}.pt"
        if not path.is_file():
            return None
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except UNREADABLE_ERRORS as exc:
            log.warning("teacher-cache entry %s is unreadable (%s); recomputing it", path, exc)
            return None

    # ---- serving a batch -----------------------------------------------------------------------

    def features(
        self, compute: Callable[[torch.Tensor], Features], images: torch.Tensor, image_sha256s: Sequence[str]
    ) -> Features:
        """`compute(images)` for the whole batch, served from disk where possible (on `images.device`)."""
        if len(image_sha256s) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(image_sha256s)} sha256 keys")
        if any(sha not in self._where for sha in image_sha256s):
            self._scan()
        missing = [index for index, sha in enumerate(image_sha256s) if sha not in self._where]
        self.hits += len(image_sha256s) - len(missing)
        self.misses += len(missing)
        if missing:
            self._fill(compute, images, image_sha256s, missing)
        first = image_sha256s[0]
        return {name: self._gather(name, image_sha256s, images.device) for name in self._orders[self._where[first]]}

    def _fill(self, compute: Callable[[torch.Tensor], Features], images: torch.Tensor,
              image_sha256s: Sequence[str], missing: list[int]) -> None:
        """Store the features of the `missing` rows: moved from the earlier format, or computed."""
        entries: dict[str, Features] = {}
        legacy_files = []
        for index in missing:
            found = self._legacy(image_sha256s[index])
            if found is not None:
                legacy_files.append(found[0])
                entries[image_sha256s[index]] = found[1]
        to_compute = [index for index in missing if image_sha256s[index] not in entries]
        if to_compute:
            # the full batch when nothing is cached, so a cold cache sees exactly the uncached computation
            batch = images if len(to_compute) == len(image_sha256s) else images[to_compute]
            with torch.no_grad():
                computed = compute(batch)
            for row, index in enumerate(to_compute):
                entries[image_sha256s[index]] = {
                    name: _as_storage(value, row, len(to_compute), name, self.dtype) for name, value in computed.items()
                }
        self._store(entries)
        for path in legacy_files:  # only once their shard is on disk
            path.unlink(missing_ok=True)

    def _gather(self, name: str, image_sha256s: Sequence[str], device: torch.device) -> torch.Tensor:
        """One feature of the batch, stacked in the rows' memory order (a plain stack is always contiguous), as
        float32 on `device`: VMamba's taps are channels_last views, as the authors return them, and the
        convolutions and train-mode BN that read them round differently on a contiguous copy."""
        rows = [self._read(sha, name) for sha in image_sha256s]
        order = memory_order(rows[0])
        physical = torch.empty((len(rows), *(rows[0].shape[dim] for dim in order)), dtype=rows[0].dtype,
                               pin_memory=device.type == "cuda")
        for index, row in enumerate(rows):
            physical[index].copy_(row.permute(*order))
        stacked = physical.permute(0, *(1 + order.index(dim) for dim in range(rows[0].dim())))
        return stacked.to(device, non_blocking=True).to(torch.float32)


def _as_storage(value: torch.Tensor, row: int, batch_size: int, name: str, dtype: torch.dtype) -> torch.Tensor:
    if value.shape[0] != batch_size:
        raise ValueError(f"teacher feature {name!r} has batch size {value.shape[0]}, expected {batch_size}")
    return value[row].detach().to("cpu", dtype).clone()
