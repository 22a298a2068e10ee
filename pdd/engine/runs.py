"""What training and evaluation share about one run: its record, its context, seeding and lock.

`run.json` (a `RunRecord`) is written when training starts and keeps the complete resolved params the
run was trained with, so `pdd evaluate` rebuilds exactly the model, teachers and data that were
trained, whatever params.yaml says by then; only the evaluation settings come from the current params.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader, Dataset

from pdd.config import Params, RunSpec, load_params
from pdd.config.schema import TeachersParams, TrainParams
from pdd.engine.results import git_state, utc_now
from pdd.engine.rundir import RUN_LAYOUT, RunDir
from pdd.engine.teacher_cache import TeacherFeatureCache
from pdd.errors import ConfigError, DataError, PDDError, WeightsError
from pdd.config.fingerprints import Stage, leaf_keys, lookup
from pdd.io import atomic_write_json, sha256_file
from pdd.models.state import teacher_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunIdentity:
    """What a run's weights depend on: params (train fingerprint), the teachers as loaded, the split.

    Training resumes, and a completed run counts as done, only under the same identity."""

    train_fingerprint: str
    teacher_weights: dict[str, str]
    split_sha256: str

    def differences(self, other: RunIdentity) -> list[str]:
        return [name for name in ("train_fingerprint", "teacher_weights", "split_sha256")
                if getattr(self, name) != getattr(other, name)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunIdentity:
        return cls(**{name: data[name] for name in ("train_fingerprint", "teacher_weights", "split_sha256")})


@dataclass
class RunRecord:
    """`RUN_DIR/run.json`: how a run was started, with the complete resolved params it was trained with."""

    dataset: str
    variant: str
    fidelity: str
    seed: int
    params_file: str
    profile: str
    overrides: list[str]
    arch: str
    params: dict[str, Any]  # Params.model_dump(mode="json"): what evaluate rebuilds the run from
    params_sha256: str
    identity: dict[str, Any]  # RunIdentity
    image_size: int
    epochs: int
    demo: bool  # Params.demo_only: synthetic data or random-init teachers; metrics.json's run.demo
    git_commit: str
    git_dirty: bool | None
    device: str
    # whether training read the teachers' features from the cache (train.teacher_cache resolved on `device`;
    # None in records written before `auto` existed, when params said it outright)
    teacher_cache: bool | None = None
    layout: int = RUN_LAYOUT
    created: str = field(default_factory=utc_now)
    # weights trained elsewhere (`pdd weights import-official`): who trained them and each file's sha256
    imported: dict[str, Any] | None = None
    # the GPU this process computed on and why (`pdd.devices.Assignment.record`; None in earlier records)
    gpu: dict[str, Any] | None = None
    # the float32 numerics applied on CUDA (`pdd.devices.set_tf32`) and bf16 autocast (None in earlier records)
    numerics: dict[str, Any] | None = None
    # what a resume could not restore on its machine (e.g. the RNG states of GPUs not visible there)
    resume_notes: list[str] = field(default_factory=list)
    # the recipe and teachers the run trained with, its variant's own values applied (`Params.recipe`,
    # `Params.teachers_of`; None in earlier records, whose runs trained with `train` and `teachers`)
    recipe: dict[str, Any] | None = None
    teachers: dict[str, Any] | None = None

    @property
    def spec(self) -> RunSpec:
        return RunSpec(self.dataset, self.variant, self.fidelity, self.seed)

    @property
    def run_identity(self) -> RunIdentity:
        return RunIdentity.from_dict(self.identity)

    def trained_params(self) -> Params:
        try:
            return Params.model_validate(self.params)
        except ValidationError as exc:  # a rule this pdd added that the recorded params break
            problem = exc.errors()[0]
            raise PDDError(
                f"the params recorded in this run's run.json do not validate under this pdd "
                f"({'.'.join(map(str, problem['loc']))}: {problem['msg']}); evaluate it with the pdd commit its "
                f"run.json records ({self.git_commit[:12]}), or train it again") from None

    def write(self, run_dir: RunDir) -> None:
        atomic_write_json(run_dir.record, asdict(self))

    @classmethod
    def read(cls, run_dir: RunDir) -> RunRecord:
        refuse_old_layout(run_dir)
        if not run_dir.record.is_file():
            raise PDDError(f"{run_dir.root} is not a training run (no {run_dir.record.name}); run "
                           f"`pdd train ... --out {run_dir.root}` first")
        return cls(**json.loads(run_dir.record.read_text(encoding="utf-8")))

    def load_params(
        self, params_file: str | Path | None = None, profile: str | None = None, overrides: list[str] = ()
    ) -> Params:
        """The current params: `params_file` (default: the one it was trained with) under the run's profile and
        overrides, then `profile` and `overrides` (e.g. evaluation settings) on top."""
        return load_params(
            params_file or self.params_file, overrides=[*self.overrides, *overrides], profile=profile or self.profile
        )


def refuse_old_layout(run_dir: RunDir) -> None:
    """A run directory of an earlier pdd layout cannot be read: say so, and what to do, before touching it."""
    old_files = run_dir.old_layout_files()
    layout = None
    if run_dir.record.is_file():
        with contextlib.suppress(OSError, ValueError):
            layout = json.loads(run_dir.record.read_text(encoding="utf-8")).get("layout")
    if old_files or (run_dir.record.is_file() and layout != RUN_LAYOUT):
        raise PDDError(
            f"{run_dir.root} was written by an earlier pdd (run layout {layout or 1}, full checkpoints such as "
            f"{old_files[0].name if old_files else 'checkpoints/epoch_XXX.pt'}; this version writes layout "
            f"{RUN_LAYOUT}: weights snapshots in snapshots/ and the resolved params in run.json). Its checkpoints "
            "cannot be resumed or re-scored safely by this version: move the directory aside (keep its "
            "metrics.json, which tables still read) and train the run again, or evaluate it with the pdd commit "
            "recorded in its run.json"
        )


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def seeded_worker(worker_id: int) -> None:
    """DataLoader workers get seeds derived from the loader's seeded generator, not from the clock."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


@dataclass
class RunContext:
    """One run under one set of resolved params: everything training and evaluation derive from them."""

    params: Params
    spec: RunSpec
    dir: RunDir

    @property
    def arch(self) -> str:
        return self.params.variant(self.spec.variant).arch

    @property
    def recipe(self) -> TrainParams:
        """The run's training recipe: `train` with its variant's own recipe on top (`Params.recipe`)."""
        return self.params.recipe(self.spec.variant)

    @property
    def teachers(self) -> TeachersParams:
        """The run's teachers: `teachers` with its variant's own entries (`Params.teachers_of`)."""
        return self.params.teachers_of(self.spec.variant)

    def train_fingerprint(self) -> str:
        return self.params.fingerprint(self.spec, Stage.TRAIN).sha256

    def evaluate_fingerprint(self) -> str:
        return self.params.fingerprint(self.spec, Stage.EVALUATE).sha256

    def build_model(self) -> torch.nn.Module:
        """The run's PDDModel, with pinned teacher checksums checked against the loaded weights."""
        from pdd.models import build_pdd

        params = self.params
        model = build_pdd(self.arch, self.spec.fidelity, **params.build_options(self.spec.variant, self.spec.fidelity))
        teachers = self.teachers
        for name, sha256 in teacher_weights(model).items():
            pinned = getattr(teachers, name).sha256
            if teachers.pretrained and pinned and sha256 != pinned:
                own = getattr(params.variant(self.spec.variant).teachers, name) is not None
                key = f"{'variants.' + self.spec.variant + '.' if own else ''}teachers.{name}"
                raise WeightsError(
                    f"teacher {name} weights have sha256 {sha256}, but params pin {key}.sha256={pinned}; "
                    f"re-download {key}.file or update the pin"
                )
        return model

    def identity(self, model: torch.nn.Module) -> RunIdentity:
        return RunIdentity(self.train_fingerprint(), teacher_weights(model), self.split_sha256())

    def prepared_root(self) -> Path:
        root = self.params.prepared_dir(self.spec.dataset)
        if not (root / "split.csv").is_file():
            synthetic = self.params.data.source == "synthetic"
            name = self.spec.dataset
            how = f"pdd data synthetic {name} --out {root}" if synthetic else f"pdd data prepare {name} --out {root} ..."
            raise DataError(f"prepared dataset {root} not found (no split.csv); create it with `{how}`")
        return root

    def split_sha256(self) -> str:
        return sha256_file(self.prepared_root() / "split.csv")

    def open_split(self, split: str) -> Dataset:
        """The split's dataset, read from ready pixels (`<paths.cache>/pixels`, made on first use)."""
        from pdd.data.dataset import PreparedDataset

        return PreparedDataset(self.prepared_root(), split=split, image_size=self.params.data.image_size,
                               classes=self.params.dataset(self.spec.dataset).classes,
                               pixel_cache=Path(self.params.paths.cache) / "pixels")

    def loader(self, dataset: Dataset, device: torch.device, batch_size: int, **options: Any) -> DataLoader:
        """Batches of `dataset` for a model on `device`: in-process or persistent workers (`Params.loader_workers`),
        pinned memory on CUDA (so that the copies to the device can be asynchronous)."""
        workers = self.params.loader_workers(device.type)
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                          worker_init_fn=seeded_worker, pin_memory=device.type == "cuda", **options)

    def evaluation_loader(self, dataset: Dataset, device: torch.device) -> DataLoader:
        return self.loader(dataset, device, self.params.eval.batch_size, shuffle=False)

    def teacher_feature_dtype(self, device_type: str) -> str:
        """The precision the students see teacher features in: the cache's storage type, or float32 live."""
        if self.params.teacher_cache_enabled(self.spec.dataset, device_type):
            return self.params.cache_dtype(self.spec.fidelity)
        return "float32"

    def teacher_cache(self, model: torch.nn.Module) -> TeacherFeatureCache | None:
        """The disk cache of the teachers' features, or None (recompute them): decided for the device the model
        is on (`train.teacher_cache: auto` depends on it), and logged."""
        device_type = next(model.parameters()).device.type
        enabled = self.params.teacher_cache_enabled(self.spec.dataset, device_type)
        own = self.params.dataset(self.spec.dataset).teacher_cache
        key, value = (("train.teacher_cache", self.params.train.teacher_cache) if own is None
                      else (f"data.datasets.{self.spec.dataset}.teacher_cache", own))
        log.info("teacher features of %s on %s: %s (%s: %s%s)", self.spec.dataset, device_type,
                 "read from the disk cache" if enabled else "recomputed every batch", key, str(value).lower(),
                 ", which caches on the CPU and recomputes on CUDA" if value == "auto" else "")
        if not enabled:
            return None
        dtype = getattr(torch, self.teacher_feature_dtype(device_type))
        root = Path(self.params.paths.cache) / "teacher_features"
        return TeacherFeatureCache(root, model.teacher_fingerprint(), self.params.data.image_size, dtype)

    def new_record(self, params_file: str | Path, overrides: list[str], identity: RunIdentity, device: str,
                   teacher_cache: bool | None, **execution: Any) -> RunRecord:
        """The record of a training (re)start; `execution`: its `gpu`, `numerics` and `resume_notes`."""
        commit, dirty = git_state()
        params = self.params
        return RunRecord(
            dataset=self.spec.dataset, variant=self.spec.variant, fidelity=self.spec.fidelity, seed=self.spec.seed,
            params_file=str(params_file), profile=params.profile, overrides=list(overrides), arch=self.arch,
            params=params.model_dump(mode="json"), params_sha256=params.sha256(), identity=asdict(identity),
            image_size=params.data.image_size, epochs=self.recipe.epochs,
            recipe=self.recipe.model_dump(mode="json"), teachers=self.teachers.model_dump(mode="json"),
            demo=params.demo_only, git_commit=commit, git_dirty=dirty, device=device, teacher_cache=teacher_cache,
            **execution,
        )


def teacher_features(
    model: torch.nn.Module, cache: TeacherFeatureCache | None, batch: dict[str, Any], device: torch.device
) -> dict[str, torch.Tensor]:
    """A batch's teacher features, from the cache when it is on."""
    images = batch["image"].to(device, non_blocking=True)
    if cache is None:
        with torch.no_grad():
            return model.teacher_features(images)
    return cache.features(model.teacher_features, images, batch["sha256"])


def differing_keys(current: Params, trained: Params, spec: RunSpec) -> list[str]:
    """Keys that change what `spec` trained on (its prepare and train fingerprints) and differ now, as
    `key (trained: a, now: b)` lines."""
    def read_keys(params: Params) -> list[str]:
        try:
            return [*params.fingerprint(spec, Stage.PREPARE).keys, *params.fingerprint(spec, Stage.TRAIN).keys]
        except ConfigError:  # the current params no longer define the run's dataset or variant
            return []

    keys = dict.fromkeys([*read_keys(current), *read_keys(trained)])
    now, then = current.model_dump(mode="json"), trained.model_dump(mode="json")
    by_name = {".".join(key): key for key in [*leaf_keys(now), *leaf_keys(then)]}
    lines = []
    for name in keys:
        key = by_name.get(name, tuple(name.split(".")))
        values = []
        for tree in (then, now):
            try:
                values.append(lookup(tree, key))
            except (KeyError, TypeError):
                values.append("<absent>")
        if values[0] != values[1]:
            lines.append(f"{name} (trained: {values[0]!r}, now: {values[1]!r})")
    return lines


@contextlib.contextmanager
def run_lock(run_dir: RunDir, enabled: bool = True) -> Iterator[None]:
    """Hold `RUN_DIR/.lock` so two live processes never write one run; released even on a crash."""
    if not enabled:
        yield
        return
    run_dir.root.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(run_dir.lock, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise PDDError(
            f"{run_dir.root} is in use by another live pdd process (lock {run_dir.lock}); wait for it to "
            "finish, or choose another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()
