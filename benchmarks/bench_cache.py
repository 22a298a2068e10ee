"""The teacher-feature cache: what it costs to build, what it saves per epoch, and its size on disk.

An epoch without the cache runs the teachers and a training step per batch; epochs 2..N with the
cache load the batch's features from disk instead. Both epochs share everything else (data loading,
the step itself), so the per-batch ratio (teachers + step) / (cache load + step) is the epoch ratio.
All four parts are timed in this run on the same batch. On a GPU (``--device cuda``) the epoch times per batch
with and without the cache are also printed, and whether `train.teacher_cache: auto`'s rule (recompute on
CUDA) holds there.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Ratio, Settings, median_seconds
from pdd.engine.schedule import build_optimizer
from pdd.engine.teacher_cache import TeacherFeatureCache
from pdd.models import build_pdd

BATCH = 10


def fake_sha256s(count: int) -> list[str]:
    return [hashlib.sha256(f"benchmark image {i}".encode()).hexdigest() for i in range(count)]


def entry_bytes(cache: TeacherFeatureCache, images: int) -> float:
    """Bytes on disk per cached image (the shards hold them all)."""
    return sum(f.stat().st_size for f in cache.directory.glob("shard-*.safetensors")) / images


def run(settings: Settings) -> dict:
    batch, size = settings.small_batch(BATCH), settings.image_size
    torch.manual_seed(0)
    model = build_pdd("full", "code", pretrained=False).train().to(settings.device)
    images, keys = torch.randn(batch, 3, size, size, device=settings.device), fake_sha256s(batch)
    optimizer = build_optimizer(model.student_parameters(), 2e-3, (0.5, 0.999))
    report: dict = {"batch": batch, "size": size}
    with torch.no_grad():
        report["teachers_s"], features = median_seconds(lambda: model.teacher_features(images), settings.repeats)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss_from_features(features)["total"].backward()
        optimizer.step()

    report["step_s"], _ = median_seconds(step, settings.repeats)
    with tempfile.TemporaryDirectory(prefix="pdd-bench-cache-") as root:
        for dtype in (torch.float32, torch.float16):
            name = str(dtype).removeprefix("torch.")
            cache = TeacherFeatureCache(Path(root), model.teacher_fingerprint(), size, dtype)
            started = time.perf_counter()
            cache.features(model.teacher_features, images, keys)  # all misses: teachers + stores
            build_s = time.perf_counter() - started
            hit_s, _ = median_seconds(lambda: cache.features(model.teacher_features, images, keys), settings.repeats)
            if cache.misses != batch:
                raise AssertionError(f"expected {batch} misses then only hits, got {cache.misses} misses")
            report[name] = {"build_s_per_image": build_s / batch, "load_s_per_batch": hit_s,
                            "bytes_per_image": entry_bytes(cache, batch)}
    uncached_epoch = report["teachers_s"] + report["step_s"]
    ratios = []
    for name in ("float32", "float16"):
        entry = report[name]
        entry["epoch_speedup"] = uncached_epoch / (entry["load_s_per_batch"] + report["step_s"])
        ratios.append(Ratio(
            f"epochs 2..N with the {name} teacher cache vs without ({size}², batch {batch})",
            # on a GPU `train.teacher_cache: auto` bets on recomputing: a speed-up there is reported, not targeted
            entry["epoch_speedup"], "" if settings.on_gpu else ">= 2",
            detail=f"per batch: teachers {report['teachers_s']:.2f} s vs load {entry['load_s_per_batch']:.3f} s, "
                   f"step {report['step_s']:.2f} s; build {entry['build_s_per_image']:.2f} s/img, "
                   f"{entry['bytes_per_image'] / 2**20:.2f} MiB/img",
        ))
    if settings.on_gpu:
        cached_epoch = report["float16"]["load_s_per_batch"] + report["step_s"]
        ratios += [
            Ratio("epoch time per batch, teacher cache off (teachers + step)", uncached_epoch, unit="s"),
            Ratio("epoch time per batch, fp16 teacher cache on (load + step)", cached_epoch, unit="s"),
            Ratio("teacher_cache auto's rule on this GPU: recomputing vs the fp16 cache", cached_epoch / uncached_epoch,
                  ">= 1", detail="> 1: recomputing the teachers is faster, as `auto` assumes on CUDA"),
        ]
    report["ratios"] = ratios
    return report
