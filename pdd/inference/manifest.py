"""`manifest.json`, what a model bundle is: validated when a bundle is written and when it is read.

The manifest is format ``pdd-model-bundle`` version 2 (`Manifest`). Version 1 (pdd 0.1 before the
manifest had a schema) named the window the training images were exported with (``input.ct_window:
"brain"``) where version 2 records the window itself (``input.window: {name, center, width}``), so a
bundle keeps meaning the same window whatever this pdd's presets say; a version-1 manifest is migrated
on reading (`read_manifest`) and its bundle needs nothing else. A manifest of a later version, or one
that does not follow the schema, is refused with what to do. Imports neither torch nor the engine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pdd.errors import PDDError
from pdd.models.options import FidelityName, ScoringName, VariantName

BUNDLE_FORMAT = "pdd-model-bundle"
BUNDLE_VERSION = 2

log = logging.getLogger(__name__)

Finite = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunInfo(_Strict):
    """The run the weights come from, and what it was trained under."""

    id: str
    dataset: str
    variant: str
    arch: VariantName
    fidelity: FidelityName
    seed: int
    demo: bool  # synthetic data or random-init teachers: the model's scores mean nothing clinically
    epochs: int = Field(ge=0)
    git_commit: str
    git_dirty: bool | None
    params_sha256: str
    train_fingerprint: str
    split_sha256: str
    evaluated: str  # when the evaluation the calibration comes from was written (ISO 8601)
    # set for weights trained elsewhere (`pdd weights import-official`): who, and each file's sha256
    weights_source: dict[str, Any] | None = None


class ModelInfo(_Strict):
    arch: VariantName
    fidelity: FidelityName
    options: dict[str, Any]  # `build_pdd` keyword arguments, including the evaluation's `map_sigma`
    scoring: ScoringName


class TrainingWindow(_Strict):
    """The CT window the training images were exported with (HeadCT: brain), in modality units (HU)."""

    name: str
    center: Finite
    width: Annotated[float, Field(ge=1.0, allow_inf_nan=False)]


class InputInfo(_Strict):
    image_size: int = Field(gt=0)
    mean: list[Finite] = Field(min_length=3, max_length=3)
    std: list[Finite] = Field(min_length=3, max_length=3)
    preprocessing: str
    window: TrainingWindow | None  # the default window for DICOM and NIfTI input; None: each file's own


class TeacherInfo(_Strict):
    model: str
    weights: str  # sha256 of the weights trained with, or "random-init"
    file: str | None  # where the run loaded them from
    url: str | None
    seed: int | None = None  # random-init teachers only
    bundled: str | None = None  # `pdd export --with-teachers`: the safetensors file in the bundle


class Selection(_Strict):
    protocol: Literal["best_of_test", "last"]
    epoch: int = Field(ge=0)
    scoring: ScoringName
    caveat: str | None


class ScoreStatistics(_Strict):
    count: int = Field(gt=0)
    mean: Finite
    std: Finite
    min: Finite
    max: Finite
    p95: Finite
    p99: Finite


class CalibrationInfo(_Strict):
    """The F1-max threshold and the score statistics of the evaluation it was chosen on."""

    threshold: Finite
    threshold_rule: str
    f1_at_threshold: Fraction
    normal_scores: ScoreStatistics
    scores: ScoreStatistics
    normalisation: str
    source: str


class Manifest(_Strict):
    format: Literal["pdd-model-bundle"]
    format_version: Literal[2]
    pdd_version: str
    run: RunInfo
    model: ModelInfo
    input: InputInfo
    teachers: dict[str, TeacherInfo] = Field(min_length=1)
    teacher_features: Literal["float32", "float16"]  # the precision the evaluation scored teacher features in
    selection: Selection
    metrics: dict[str, Fraction | None]  # the selected epoch's pooled test metrics
    calibration: CalibrationInfo
    files: dict[str, str] | None = None  # sha256 of every other file of the bundle folder (None in memory)


def validate_manifest(document: dict[str, Any], source: str) -> Manifest:
    """`document` as a `Manifest`, or a PDDError naming every field that does not follow the schema."""
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}" for error in exc.errors())
        raise PDDError(f"{source} does not follow the {BUNDLE_FORMAT} v{BUNDLE_VERSION} manifest schema "
                       f"({problems}); export the model again from its run (`pdd export`)") from exc


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`, migrated from version 1 if need be; refused if unreadable or of a later version."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PDDError(f"{path} is unreadable ({exc}); export the model again") from exc
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise PDDError(f"{path} is not a pdd model bundle manifest (format {found!r}); pass the folder "
                       "`pdd export` wrote")
    version = document.get("format_version")
    if version == 1:
        log.info("%s: bundle format v1, read as v%d (the training window's name becomes the window itself)",
                 path, BUNDLE_VERSION)
        document = migrate_v1(document)
    elif isinstance(version, int) and version > BUNDLE_VERSION:
        raise PDDError(f"{path} is a bundle of format v{version}, written by a newer pdd; this pdd reads up to "
                       f"v{BUNDLE_VERSION}: upgrade pdd, or export the model again with this one")
    return validate_manifest(document, str(path))


def migrate_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A version-1 manifest as version 2: ``input.ct_window`` (a preset name or None) becomes ``input.window``."""
    from pdd.inference.readers import WINDOW_PRESETS

    migrated = json.loads(json.dumps(document))  # a deep copy
    section = migrated.get("input", {})
    name = section.pop("ct_window", None)
    if name is not None and name not in WINDOW_PRESETS:
        raise PDDError(f"bundle format v1 names the training window {name!r}, which this pdd does not know; "
                       "export the model again from its run")
    preset = WINDOW_PRESETS.get(name)
    section["window"] = None if preset is None else {"name": name, "center": preset.center, "width": preset.width}
    migrated["format_version"] = BUNDLE_VERSION
    return migrated
