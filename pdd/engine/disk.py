"""How much disk a plan takes, before it runs (`pdd params plan --disk`).

Per run: the weights snapshots (`train.eval_every`, `train.keep_snapshots`), the one resumable checkpoint
that exists while the run trains (weights + Adam's two moments), and per dataset the teacher-feature
cache (shared by every run with the same teachers, image size and storage dtype, `Params.cache_dtype`:
fp32 and fp16 runs of one dataset need one cache each) and the ready pixels of its splits
(`pdd.data.pixel_store`: S×S×3 bytes per image, S×S per mask). Sizes come from the models' real tensors and
one teacher forward pass at the configured image size; image counts from the prepared split.csv when it
exists, else from the dataset's published protocol (or the synthetic counts; masks are then not counted).
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass, field

import torch

from pdd.config import Params, RunSpec
from pdd.models.options import Variant
from pdd.models.state import trainable_state

# safetensors' JSON header and torch.save's zip framing, per tensor (measured; small beside the data)
SNAPSHOT_OVERHEAD_PER_TENSOR = 110
CHECKPOINT_OVERHEAD_PER_TENSOR = 600
CACHE_OVERHEAD_PER_ENTRY = 1500
PIXELS_OVERHEAD_PER_IMAGE = 130  # the store's manifest: each row's paths, sizes and modification times


@dataclass(frozen=True)
class RunDisk:
    run: RunSpec
    snapshot_bytes: int  # one snapshot
    snapshots_written: int  # by training
    snapshots_kept_at_most: int  # after `pdd evaluate`
    checkpoint_bytes: int  # while the run trains; deleted when it completes

    @property
    def kept_bytes(self) -> int:
        return self.snapshot_bytes * self.snapshots_kept_at_most


@dataclass(frozen=True)
class CacheDisk:
    dataset: str
    teachers: str  # which teachers: `wrn50.<tag>` for M1/M2, `wrn50.<tag>+vmamba` otherwise
    images: int
    bytes_per_image: int
    dtype: str

    @property
    def total(self) -> int:
        return self.images * self.bytes_per_image


@dataclass(frozen=True)
class PixelsDisk:
    dataset: str
    images: int  # train + test
    masks: int
    image_size: int

    @property
    def total(self) -> int:
        pixels = self.image_size * self.image_size
        return self.images * (3 * pixels + PIXELS_OVERHEAD_PER_IMAGE) + self.masks * pixels


@dataclass
class DiskPlan:
    runs: list[RunDisk] = field(default_factory=list)
    caches: list[CacheDisk] = field(default_factory=list)
    pixels: list[PixelsDisk] = field(default_factory=list)

    @property
    def snapshots_total(self) -> int:
        return sum(run.kept_bytes for run in self.runs)

    @property
    def cache_total(self) -> int:
        return sum(cache.total for cache in self.caches)

    @property
    def pixels_total(self) -> int:
        return sum(pixels.total for pixels in self.pixels)

    @property
    def after_the_plan(self) -> int:
        return self.snapshots_total + self.cache_total + self.pixels_total

    @property
    def largest_checkpoint(self) -> int:
        return max((run.checkpoint_bytes for run in self.runs), default=0)

    def as_dict(self) -> dict:
        return {
            "runs": [{"id": r.run.id, "snapshot_bytes": r.snapshot_bytes, "snapshots_written": r.snapshots_written,
                      "snapshots_kept_at_most": r.snapshots_kept_at_most, "checkpoint_bytes": r.checkpoint_bytes}
                     for r in self.runs],
            "caches": [{"dataset": c.dataset, "teachers": c.teachers, "images": c.images,
                        "bytes_per_image": c.bytes_per_image, "dtype": c.dtype} for c in self.caches],
            "ready_pixels": [{"dataset": p.dataset, "images": p.images, "masks": p.masks, "image_size": p.image_size,
                              "bytes": p.total} for p in self.pixels],
            "totals": {"snapshots": self.snapshots_total, "teacher_cache": self.cache_total,
                       "ready_pixels": self.pixels_total, "largest_resumable_checkpoint": self.largest_checkpoint,
                       "after_the_plan": self.after_the_plan},
        }


def plan_disk(params: Params, runs: list[RunSpec]) -> DiskPlan:
    plan = DiskPlan()
    for run in runs:
        arch = params.variant(run.variant).arch
        options = json.dumps(params.model_options(run.variant, run.fidelity), sort_keys=True)
        state_bytes, tensors, parameter_bytes = _trainable_sizes(arch, run.fidelity, options)
        recipe = params.recipe(run.variant)  # a variant's own epochs and snapshot cadence
        written = _snapshot_epochs(recipe.epochs, recipe.eval_every)
        scorings = [s for s in params.eval.scorings if s in Variant(arch).scorings]
        # selected: `last` plus at most one `best_of_test` epoch per scoring
        kept = written if params.train.keep_snapshots == "all" else min(written, 1 + len(scorings))
        plan.runs.append(RunDisk(run, state_bytes + SNAPSHOT_OVERHEAD_PER_TENSOR * tensors, written, kept,
                                 state_bytes + 2 * parameter_bytes + CHECKPOINT_OVERHEAD_PER_TENSOR * tensors * 3))
    seen: set[tuple[str, str, str]] = set()
    for run in runs:
        # one cache per set of teachers (a variant's own WRN50 tag is another teacher) and storage dtype
        wrn50 = f"wrn50.{params.teachers_of(run.variant).wrn50.tag}"
        family = f"{wrn50}+vmamba" if Variant(params.variant(run.variant).arch).uses_vmamba else wrn50
        dtype = getattr(torch, params.cache_dtype(run.fidelity))
        if (run.dataset, family, str(dtype)) in seen or not params.teacher_cache_enabled(run.dataset):
            continue
        seen.add((run.dataset, family, str(dtype)))
        per_image = _feature_elements(params.variant(run.variant).arch, params.data.image_size) * dtype.itemsize
        plan.caches.append(CacheDisk(run.dataset, family, dataset_images(params, run.dataset),
                                     per_image + CACHE_OVERHEAD_PER_ENTRY, str(dtype).removeprefix("torch.")))
    for dataset in dict.fromkeys(run.dataset for run in runs):
        plan.pixels.append(PixelsDisk(dataset, *_split_counts(params, dataset), params.data.image_size))
    return plan


def _snapshot_epochs(epochs: int, every: int) -> int:
    return epochs // every + (1 if epochs % every else 0)


@functools.lru_cache(maxsize=None)
def _trainable_sizes(arch: str, fidelity: str, options_json: str) -> tuple[int, int, int]:
    """(bytes of the trainable state, its tensor count, bytes of the trainable parameters)."""
    from pdd.models import build_pdd

    model = build_pdd(arch, fidelity, pretrained=False, **json.loads(options_json))
    state = trainable_state(model)
    return (sum(t.numel() * t.element_size() for t in state.values()), len(state),
            sum(p.numel() * p.element_size() for p in model.student_parameters()))


@functools.lru_cache(maxsize=None)
def _feature_elements(arch: str, image_size: int) -> int:
    """Elements of everything the frozen teachers produce for one image (what the cache stores)."""
    from pdd.models import build_pdd

    model = build_pdd(arch, "code", pretrained=False)
    with torch.no_grad():
        features = model.teacher_features(torch.zeros(1, 3, image_size, image_size))
    return sum(value[0].numel() for value in features.values())


def _split_counts(params: Params, dataset: str) -> tuple[int, int]:
    """(train + test images, masks) of `dataset`: from split.csv, else its image count without masks."""
    split = params.prepared_dir(dataset) / "split.csv"
    if not split.is_file():
        return dataset_images(params, dataset), 0
    with open(split, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] in ("train", "test")]
    return len(rows), sum(1 for row in rows if row["mask"])


def dataset_images(params: Params, dataset: str) -> int:
    """Train + test images: from the prepared split.csv, else the protocol's or the synthetic counts."""
    split = params.prepared_dir(dataset) / "split.csv"
    if split.is_file():
        with open(split, newline="", encoding="utf-8") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    from pdd.data.registry import DATASETS

    entry = DATASETS[dataset] if dataset in DATASETS else None
    classes = params.dataset(dataset).classes
    if params.data.source == "synthetic":
        per_class = params.data.synthetic.n_train + 2 * params.data.synthetic.n_test
        return per_class * (len(classes) if classes else 1)
    if entry is None:
        return 0
    counts = entry.expected_counts
    if classes:
        counts = {key: value for key, value in counts.items() if key.split("/")[0] in classes}
    return sum(counts.values())


def human(n_bytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n_bytes) < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} TB"


def format_disk_plan(plan: DiskPlan, params: Params) -> str:
    own = sorted({run.run.variant for run in plan.runs
                  if {"epochs", "eval_every"} & set(params.variant(run.run.variant).recipe_overrides())})
    cadence = "".join(f", variants.{name}: {params.recipe(name).epochs} epochs, eval_every "
                      f"{params.recipe(name).eval_every}" for name in own)
    lines = [f"# disk plan, profile {params.profile}: train.epochs {params.train.epochs}, train.eval_every "
             f"{params.train.eval_every}{cadence}, "
             f"train.keep_snapshots {params.train.keep_snapshots}, teacher cache at {params.data.image_size}px "
             f"(train.cache_fp16 {params.train.cache_fp16}: see each cache's dtype)", "",
             f"{'run':48} {'snapshot':>10} {'written':>8} {'kept':>5} {'kept bytes':>11} {'while training':>15}"]
    for run in plan.runs:
        lines.append(f"{run.run.id:48} {human(run.snapshot_bytes):>10} {run.snapshots_written:>8} "
                     f"{run.snapshots_kept_at_most:>5} {human(run.kept_bytes):>11} {human(run.checkpoint_bytes):>15}")
    lines += ["", f"{'teacher cache':48} {'images':>10} {'dtype':>8} {'per image':>10} {'total':>11}"]
    for cache in plan.caches:
        lines.append(f"{cache.dataset + ' (' + cache.teachers + ')':48} {cache.images:>10} {cache.dtype:>8} "
                     f"{human(cache.bytes_per_image):>10} {human(cache.total):>11}")
    lines += ["", f"{'ready pixels':48} {'images':>10} {'masks':>8} {'size':>10} {'total':>11}"]
    for pixels in plan.pixels:
        lines.append(f"{pixels.dataset:48} {pixels.images:>10} {pixels.masks:>8} {str(pixels.image_size) + '²':>10} "
                     f"{human(pixels.total):>11}")
    lines += ["",
              f"snapshots kept after evaluation: {human(plan.snapshots_total)}",
              f"teacher cache:                   {human(plan.cache_total)}",
              f"ready pixels:                    {human(plan.pixels_total)}",
              f"after the plan completes:        {human(plan.after_the_plan)}",
              f"while a run trains, add its resumable checkpoint (largest {human(plan.largest_checkpoint)}) and, "
              f"with keep_snapshots: selected, its snapshots before pruning"]
    return "\n".join(lines)
