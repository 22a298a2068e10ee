"""What training and evaluation share about one run: its record, model, data, seeding and lock.

`run.json` is written when training starts and is what `pdd evaluate` rebuilds the run from, so
evaluation needs only `--run RUN_DIR` (plus the params file for the evaluation settings).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pdd.config import Params, RunSpec, load_params
from pdd.engine.checkpoint import CheckpointManager
from pdd.engine.results import git_state, utc_now
from pdd.engine.teacher_cache import TeacherFeatureCache
from pdd.errors import DataError, PDDError, WeightsError
from pdd.io import atomic_write_json, sha256_file

RUN_RECORD = "run.json"
LOCK_FILE = ".lock"


@dataclass
class RunRecord:
    """`RUN_DIR/run.json`: how a run was started, enough to rebuild its model and data later."""

    dataset: str
    variant: str
    fidelity: str
    seed: int
    params_file: str
    profile: str
    overrides: list[str]
    arch: str
    params_sha256: str
    split_sha256: str
    teacher_weights: dict[str, str]
    image_size: int
    epochs: int
    demo: bool
    git_commit: str
    git_dirty: bool | None
    device: str
    created: str = field(default_factory=utc_now)

    @property
    def spec(self) -> RunSpec:
        return RunSpec(self.dataset, self.variant, self.fidelity, self.seed)

    def write(self, run_dir: Path) -> None:
        atomic_write_json(run_dir / RUN_RECORD, asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunRecord:
        path = Path(run_dir) / RUN_RECORD
        if not path.is_file():
            raise PDDError(f"{run_dir} is not a training run (no {RUN_RECORD}); run `pdd train ... --out {run_dir}` first")
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def load_params(
        self, params_file: str | Path | None = None, profile: str | None = None, overrides: list[str] = ()
    ) -> Params:
        """The run's params: `params_file` (default: the one it was trained with) under the run's profile and
        overrides, then `profile` and `overrides` (e.g. evaluation settings) on top."""
        return load_params(
            params_file or self.params_file, overrides=[*self.overrides, *overrides], profile=profile or self.profile
        )


def training_signature(params: Params, spec: RunSpec) -> str:
    """Hash of every setting that changes what training computes; a run resumes only under the same one."""
    relevant = {
        "spec": list(spec),
        "build": params.build_options(spec.variant, spec.fidelity),
        "arch": params.variant(spec.variant).arch,
        "image_size": params.data.image_size,
        "prepared": str(params.prepared_dir(spec.dataset)),
        "classes": params.dataset(spec.dataset).classes,
        "train": params.train.model_dump(mode="json"),
        "eval": params.eval.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def build_model(params: Params, spec: RunSpec) -> torch.nn.Module:
    """The run's PDDModel, with pinned teacher checksums checked against the loaded weights."""
    from pdd.models import build_pdd

    model = build_pdd(params.variant(spec.variant).arch, spec.fidelity, **params.build_options(spec.variant, spec.fidelity))
    for name, sha256 in teacher_weights(model).items():
        pinned = getattr(params.teachers, name).sha256
        if params.teachers.pretrained and pinned and sha256 != pinned:
            raise WeightsError(
                f"teacher {name} weights have sha256 {sha256}, but params pin teachers.{name}.sha256={pinned}; "
                f"re-download teachers.{name}.file or update the pin"
            )
    return model


def teacher_weights(model: torch.nn.Module) -> dict[str, str]:
    """{teacher: weights sha256 | "random-init"}, as metrics.json records them."""
    return {name: str(identity["weights"]) for name, identity in model.teacher_fingerprint().items()}


def prepared_root(params: Params, dataset: str) -> Path:
    root = params.prepared_dir(dataset)
    if not (root / "split.csv").is_file():
        synthetic = params.data.source == "synthetic"
        how = f"pdd data synthetic {dataset} --out {root}" if synthetic else f"pdd data prepare {dataset} --out {root} ..."
        raise DataError(f"prepared dataset {root} not found (no split.csv); create it with `{how}`")
    return root


def split_sha256(params: Params, dataset: str) -> str:
    return sha256_file(prepared_root(params, dataset) / "split.csv")


def check_same_split(params: Params, record: RunRecord) -> None:
    """Refuse to evaluate a run on another split than the one it was trained with."""
    current = split_sha256(params, record.dataset)
    if current != record.split_sha256:
        raise DataError(
            f"{params.prepared_dir(record.dataset)}/split.csv changed since this run was trained (sha256 "
            f"{current[:12]}…, run.json has {record.split_sha256[:12]}…); prepare the dataset again with the same "
            "seed, or retrain the run"
        )


def open_split(params: Params, dataset: str, split: str) -> Dataset:
    from pdd.data.dataset import PreparedDataset

    return PreparedDataset(
        prepared_root(params, dataset), split=split, image_size=params.data.image_size,
        classes=params.dataset(dataset).classes,
    )


def seeded_worker(worker_id: int) -> None:
    """DataLoader workers get seeds derived from the loader's seeded generator, not from the clock."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def evaluation_loader(params: Params, dataset: Dataset) -> DataLoader:
    return DataLoader(
        dataset, batch_size=params.eval.batch_size, shuffle=False, num_workers=params.train.num_workers,
        worker_init_fn=seeded_worker,
    )


def teacher_cache(params: Params, model: torch.nn.Module) -> TeacherFeatureCache | None:
    if not params.train.teacher_cache:
        return None
    dtype = torch.float16 if params.train.cache_fp16 else torch.float32
    root = Path(params.paths.cache) / "teacher_features"
    return TeacherFeatureCache(root, model.teacher_fingerprint(), params.data.image_size, dtype)


def teacher_features(
    model: torch.nn.Module, cache: TeacherFeatureCache | None, batch: dict[str, Any], device: torch.device
) -> dict[str, torch.Tensor]:
    """A batch's teacher features, from the cache when it is on."""
    images = batch["image"].to(device, non_blocking=True)
    if cache is None:
        with torch.no_grad():
            return model.teacher_features(images)
    return cache.features(model.teacher_features, images, batch["sha256"])


def checkpoints(run_dir: Path, params: Params) -> CheckpointManager:
    return CheckpointManager(Path(run_dir) / "checkpoints", keep_every=params.train.checkpoint_every)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state without the frozen teachers, which are rebuilt from their weights instead."""
    return {key: value for key, value in model.state_dict().items() if not key.startswith("teachers.")}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith("teachers.")]
    if missing or unexpected:
        raise PDDError(
            f"checkpoint does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "was it written by another variant? Use a fresh --out directory"
        )


@contextlib.contextmanager
def run_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold `RUN_DIR/.lock` so two live processes never write one run; released even on a crash."""
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(run_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise PDDError(
            f"{run_dir} is in use by another live pdd process (lock {run_dir / LOCK_FILE}); wait for it to "
            "finish, or choose another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


def new_record(params: Params, params_file: str | Path, spec: RunSpec, overrides: list[str], model: torch.nn.Module,
               device: str) -> RunRecord:
    weights = teacher_weights(model)
    commit, dirty = git_state()
    return RunRecord(
        dataset=spec.dataset, variant=spec.variant, fidelity=spec.fidelity, seed=spec.seed,
        params_file=str(params_file), profile=params.profile, overrides=list(overrides),
        arch=params.variant(spec.variant).arch, params_sha256=params.sha256(),
        split_sha256=split_sha256(params, spec.dataset), teacher_weights=weights,
        image_size=params.data.image_size, epochs=params.train.epochs,
        demo=params.demo or not params.teachers.pretrained,
        git_commit=commit, git_dirty=dirty, device=device,
    )
