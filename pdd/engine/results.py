"""`metrics.json` (schema version 1): the only thing tables and figures are built from.

Every document is validated before it is written and after it is read, so a table can never be
rendered from a file with a missing key, a typo'd metric name or an out-of-range value.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pdd.errors import DataError
from pdd.io import atomic_write_json
from pdd.models.options import FidelityName, ScoringName, VariantName

if TYPE_CHECKING:
    import torch

SCHEMA_VERSION = 1
PROVENANCE_PACKAGES = ("pdd", "torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn")

MetricValue = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricSet(_Strict):
    image_AUROC: MetricValue
    image_AP: MetricValue
    image_F1max: MetricValue
    # the operating points (sensitivity at 95 % specificity and the reverse); absent in files of earlier pdd
    # versions, which stay readable: the replication report recomputes them from the per-image scores
    image_sens_at_spec95: MetricValue = None
    image_spec_at_sens95: MetricValue = None
    pixel_AUROC: MetricValue
    pixel_AUPRO: MetricValue


class ClassMetrics(_Strict):
    pooled: MetricSet
    per_class: dict[str, MetricSet]


class Evaluation(ClassMetrics):
    epoch: int = Field(ge=0)


class SelectedEvaluation(Evaluation):
    """An epoch chosen on the test set; its metrics are per image whatever chose it."""

    # absent in files of earlier pdd versions, which always selected by `per_image`
    selected_by: Literal["per_image", "official_first_image"] | None = None
    selection_AUROC: MetricValue = None  # the value the scorer maximised (official: rounded to 4 decimals)


class ScoringResults(_Strict):
    last: Evaluation
    best_of_test: SelectedEvaluation  # selected by eval.selection_scorer
    # the epoch every selection scorer picks, for side-by-side reports (absent in earlier files)
    best_of_test_by: dict[Literal["per_image", "official_first_image"], SelectedEvaluation] | None = None


class RunInfo(_Strict):
    dataset: str
    variant: str
    arch: VariantName
    fidelity: FidelityName
    seed: int
    profile: str | None
    image_size: int = Field(gt=0)
    epochs: int = Field(ge=0)
    demo: bool  # synthetic data or random-init teachers (Params.demo_only): the numbers are no result


class Provenance(_Strict):
    git_commit: str
    git_dirty: bool | None
    params_sha256: str
    split_sha256: str
    teacher_weights: dict[str, str]
    packages: dict[str, str]
    device: str
    wall_time_s: float = Field(ge=0.0)
    created: str
    # what this evaluation ran under (absent in files of earlier pdd versions)
    fingerprints: dict[Literal["train", "evaluate"], str] | None = None
    snapshots_scored: list[int] | None = None  # the epochs best_of_test chose from
    # epochs trained with a snapshot that was deleted (`train.keep_snapshots: selected`) before it was scored
    # under these settings: best_of_test could not consider them
    snapshots_missing: list[int] | None = None
    params_not_applied: list[str] | None = None  # current keys that differ from the run's and were not applied
    # the eval.* settings applied and the precision of the teacher features scored: what `pdd export`
    # hands a predictor so that it reproduces these scores
    evaluation: dict[str, Any] | None = None
    # weights not trained by pdd (`pdd weights import-official`): who trained them, each file and its sha256
    weights_source: dict[str, Any] | None = None


class MetricsDocument(_Strict):
    schema_version: Literal[1]
    run: RunInfo
    metrics: dict[ScoringName, ScoringResults] = Field(min_length=1)
    provenance: Provenance


class ImageScores(_Strict):
    """One score per test image in split order: what `pdd export` calibrates from and `pdd predict` must
    reproduce, and what a different selection protocol (or a reader of the paper) can recompute from."""

    paths: list[str]
    labels: list[Literal[0, 1]]
    scores: dict[ScoringName, list[float]] = Field(min_length=1)


class EpochEvaluation(_Strict):
    """`eval/epoch_XXX.json`: what `pdd evaluate` measured on the test split with one epoch's snapshot."""

    epoch: int = Field(ge=0)
    metrics: dict[ScoringName, ClassMetrics] = Field(min_length=1)
    images: ImageScores | None = None  # absent in files of earlier pdd versions (then scored again)
    # the train and evaluate fingerprints it was scored under: reused only under the same ones
    evaluated_with: dict[Literal["train", "evaluate"], str] | None = None


def _validated(model: type[BaseModel], document: Any, source: str) -> BaseModel:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}" for error in exc.errors()
        )
        raise DataError(
            f"{source} does not follow the {model.__name__} schema v{SCHEMA_VERSION} ({problems}); "
            "re-run `pdd evaluate` to regenerate it"
        ) from exc


def validate_metrics(document: dict[str, Any], source: str = "metrics document") -> dict[str, Any]:
    """Return `document` unchanged if it is a valid schema-v1 metrics.json, else raise DataError."""
    _validated(MetricsDocument, document, source)
    return document


def write_metrics(path: str | Path, document: dict[str, Any]) -> None:
    atomic_write_json(path, validate_metrics(document, str(path)))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path} ({exc}); re-run the command that writes it") from exc


def read_metrics(path: str | Path) -> dict[str, Any]:
    return validate_metrics(_read_json(Path(path)), str(path))


def write_epoch_evaluation(path: str | Path, document: dict[str, Any]) -> None:
    _validated(EpochEvaluation, document, str(path))
    atomic_write_json(path, document)


def read_epoch_evaluation(path: str | Path) -> dict[str, Any]:
    document = _read_json(Path(path))
    _validated(EpochEvaluation, document, str(path))
    return document


def git_state(directory: str | Path | None = None) -> tuple[str, bool | None]:
    """(commit, dirty) of the checkout holding the `pdd` sources; ("unknown", None) outside git."""
    directory = Path(directory) if directory else Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return commit, dirty


def package_versions(names: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe_device(device: torch.device, world_size: int = 1) -> str:
    """E.g. "cpu (2 threads)", "cuda:1 (NVIDIA H200)", "cpu (1 threads) x2" for a 2-process run.

    CPU results are reproducible only at the same thread count (reduction order), so it is recorded."""
    import torch  # here, not at the top: `pdd tables` reads metrics.json through this module without torch

    name = f"cpu ({torch.get_num_threads()} threads)"
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    return name if world_size == 1 else f"{name} x{world_size}"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
