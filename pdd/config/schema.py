"""The schema of `params.yaml`: every section, its types and ranges, and the cross-field rules.

Sections are strict and frozen pydantic models, so a typo or an out-of-range value fails `pdd params
check` in seconds. Model options are not declared here: `ModelOptions` is generated from
`pdd.models.options.PDDOptions`, the one declaration the model itself validates with. What the plan
implies (runs, fingerprints) is mixed in from `pdd.config.plan`; reading the file is `pdd.config.loading`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model, model_validator

from pdd.config.plan import PlanQueries, RunSpec
from pdd.errors import ConfigError
from pdd.models.pretrained import VMAMBA_TINY_WEIGHTS, WRN50_WEIGHTS
from pdd.models.options import (
    WRN50_TAGS,
    Fidelity,
    FidelityName,
    NonNegativeFloat,
    PDDOptions,
    Scoring,
    ScoringName,
    UnitInterval,
    Variant,
    VariantName,
    values_literal,
)

BASE_PROFILE = "paper"

FIDELITIES: tuple[str, ...] = typing.get_args(FidelityName)

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Seed = Annotated[int, Field(ge=0)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# names end up in paths (results/<dataset>/<variant>/...), so no slashes or spaces
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


class KeyProblem(ValueError):
    """A cross-field problem located at `key` below the model that raised it (`loading` names the full key)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class _Section(BaseModel):
    # strict: "10" is not an int and "yes" is not a bool, whatever YAML or --set produced
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PathsParams(_Section):
    raw: NonEmptyStr
    prepared: NonEmptyStr
    weights: NonEmptyStr
    cache: NonEmptyStr
    results: NonEmptyStr
    tables: NonEmptyStr


class SyntheticParams(_Section):
    n_train: PositiveInt = 16
    n_test: PositiveInt = 8  # normal and anomalous, each
    size: Annotated[int, Field(ge=16)] = 64


TeacherCache = bool | Literal["auto"]  # auto: cache on the CPU, recompute on CUDA (Params.teacher_cache_enabled)


class DatasetParams(_Section):
    """One dataset: a paper dataset of the registry (`kind: registry`, the default) or a user's own folder."""

    kind: Literal["registry", "folder"] = "registry"
    root: NonEmptyStr | None = None  # folder: where the images are (pdd.data.folder)
    layout: Literal["mvtec", "csv"] = "mvtec"  # folder: train/good + test/<anomaly> trees, or a labels table
    csv: NonEmptyStr | None = None  # folder, layout csv: the table, relative to root (default labels.csv)
    normal_test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.4  # folder: normals drawn into test when unsplit
    seed: Seed | None = None  # None: data.split_seed
    classes: Annotated[list[Name], Field(min_length=1)] | None = None
    teacher_cache: TeacherCache | None = None  # None: train.teacher_cache

    @model_validator(mode="after")
    def _folder_has_a_root(self) -> DatasetParams:
        if self.kind == "folder" and self.root is None:
            raise KeyProblem("root", "a folder dataset needs root: the folder holding its images")
        if self.kind == "registry":
            for key in ("root", "csv"):
                if getattr(self, key) is not None:
                    raise KeyProblem(key, "only a folder dataset (kind: folder) has one; paper datasets are "
                                        "downloaded into paths.raw")
        return self


class DataParams(_Section):
    image_size: int
    split_seed: Seed = 0
    source: Literal["real", "synthetic"] = "real"
    synthetic: SyntheticParams = SyntheticParams()
    datasets: Annotated[dict[Name, DatasetParams], Field(min_length=1)]

    @model_validator(mode="after")
    def _image_size_fits_teachers(self) -> DataParams:
        if self.image_size < 32 or self.image_size % 32:
            raise KeyProblem("image_size", f"must be a multiple of 32 and at least 32 (the teachers downsample "
                                         f"by 32), got {self.image_size}")
        return self


class WeightsParams(_Section):
    """Where a teacher's file lives, and where it is downloaded from and pinned to (`pdd weights fetch`)."""

    file: NonEmptyStr
    url: NonEmptyStr | None = None  # None: no download, the file must be put in place
    sha256: Sha256 | None = None  # None: not pinned


class VMambaWeightsParams(WeightsParams):
    url: NonEmptyStr | None = VMAMBA_TINY_WEIGHTS.url  # the pin, `pdd.models.pretrained`
    sha256: Sha256 | None = VMAMBA_TINY_WEIGHTS.sha256


class WideResNetParams(WeightsParams):
    """`url` defaults to the tag's pinned file; with `sha256: null` that file is checked against the 8 hex
    digits its name carries (`pdd.models.pretrained`)."""

    tag: Literal[WRN50_TAGS] = PDDOptions.wrn_tag  # timm pretrained tag

    @model_validator(mode="before")
    @classmethod
    def _url_of_the_tag(cls, data: Any) -> Any:
        tag = data.get("tag", PDDOptions.wrn_tag) if isinstance(data, dict) else None
        if isinstance(tag, str) and tag in WRN50_WEIGHTS and "url" not in data:
            data = {**data, "url": WRN50_WEIGHTS[tag].url}
        return data


class TeachersParams(_Section):
    pretrained: bool = True
    init_seed: Seed = 0
    vmamba: VMambaWeightsParams
    wrn50: WideResNetParams


class _ModelOptionsSection(_Section):
    def as_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _all_optional(name: str, base: type[_Section], doc: str, hints: dict[str, Any]) -> type[_Section]:
    """A section generated from another declaration's field types, each optional (None: the other's value), so
    that the types and ranges are declared once."""
    return create_model(name, __base__=base, __doc__=doc, **{key: (hint | None, None) for key, hint in hints.items()})


def _params_hint(hint: Any) -> Any:
    """An option's type as params.yaml holds it: an enum by its plain value."""
    return values_literal(hint) if isinstance(hint, type) and issubclass(hint, enum.Enum) else hint


# Generated from PDDOptions' tunable fields (docs/model.md)
ModelOptions = _all_optional(
    "ModelOptions", _ModelOptionsSection, "Options forwarded to `pdd.models.build_pdd`; None leaves the model's own "
    "default.", {name: _params_hint(hint) for name, hint in PDDOptions.tunable_fields().items()})


class ModelParams(_Section):
    fidelity: FidelityName = Fidelity.CODE.value
    fidelities: dict[FidelityName, ModelOptions] = {}


# The parameters each learning-rate schedule reads (`pdd.engine.schedule`); the others are not read, so a run's
# train fingerprint leaves them out and a variant may not set them
SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "cosine_periodic": ("t_max", "eta_min"),  # the authors' CosineAnnealingLR(T_max), run past T_max
    "cosine_single": ("eta_min",),  # one decay over train.epochs
    "constant": (),  # no schedule: train.lr throughout (RD4AD's main.py)
}
SCHEDULE_PARAMETERS = ("t_max", "eta_min")
# What a variant may set for its own runs (`variants.<name>.train`): optimizer, schedule, length, batch and snapshot
# cadence. Execution (num_workers), numerics (tf32, bf16_autocast, deterministic) and what evaluation or the
# teacher cache own (keep_snapshots, teacher_cache, cache_fp16) stay global: one protocol for every run.
RECIPE_KEYS = ("optimizer", "lr", "betas", "weight_decay", "schedule", "t_max", "eta_min", "epochs", "batch_size",
               "eval_every")


class TrainParams(_Section):
    optimizer: Literal["adam"] = "adam"
    lr: PositiveFloat
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)]
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal[tuple(SCHEDULE_KEYS)] = "cosine_periodic"
    t_max: PositiveInt
    eta_min: NonNegativeFloat
    epochs: PositiveInt
    batch_size: PositiveInt
    eval_every: PositiveInt  # a weights snapshot every N epochs (and at the end): what `pdd evaluate` selects from
    keep_snapshots: Literal["all", "selected"] = "all"  # selected: `pdd evaluate` prunes the unselected ones
    teacher_cache: TeacherCache = "auto"  # auto: by device (Params.teacher_cache_enabled)
    cache_fp16: bool | None = None  # None: fp32 under fidelity code (its exact numerics), fp16 under paper
    bf16_autocast: bool = False
    # float32 matrix products and convolutions on CUDA through TF32 tensor cores (pdd.devices.set_tf32); no
    # effect on the CPU. False: full float32, the numerics the CPU tests pin down
    tf32: bool = False
    deterministic: bool = True
    num_workers: NonNegativeInt | Literal["auto"] = "auto"  # auto: by device (Params.loader_workers)

    @model_validator(mode="after")
    def _eta_min_below_lr(self) -> TrainParams:
        if "eta_min" in SCHEDULE_KEYS[self.schedule] and self.eta_min > self.lr:
            raise KeyProblem("eta_min", f"must not exceed train.lr ({self.lr}), got {self.eta_min}")
        return self

    @property
    def unread(self) -> tuple[str, ...]:
        """The schedule parameters this recipe's schedule does not read."""
        return tuple(key for key in SCHEDULE_PARAMETERS if key not in SCHEDULE_KEYS[self.schedule])


def _constrained(field: Any) -> Any:
    """A pydantic field's type with its constraints."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


# Generated from TrainParams, so that a variant's recipe has exactly the global recipe's types and ranges
RecipeOverrides = _all_optional(
    "RecipeOverrides", _Section, "A variant's own training recipe (`variants.<name>.train`); None keeps the global "
    "`train` value.", {name: _constrained(TrainParams.model_fields[name]) for name in RECIPE_KEYS})


class VariantTeachers(_Section):
    """A variant's own teacher files (RD4AD's torchvision WRN50, say), each replacing the global entry whole."""

    vmamba: VMambaWeightsParams | None = None
    wrn50: WideResNetParams | None = None


class VariantParams(_Section):
    """One arm of a table: an architecture, model options over the fidelity's and, for a baseline re-run with its
    own protocol, its own recipe (`train`) and teachers on top of the global ones (`Params.recipe`,
    `Params.teachers_of`)."""

    arch: VariantName
    overrides: ModelOptions = ModelOptions()
    train: RecipeOverrides = RecipeOverrides()
    teachers: VariantTeachers = VariantTeachers()

    @model_validator(mode="after")
    def _what_the_arch_uses(self) -> VariantParams:
        """An override the architecture would not read is a mistake (a τ for M1, VMamba weights for RD4AD)."""
        arch = Variant(self.arch)
        for name in self.overrides.as_kwargs():
            if name not in arch.options_read:
                raise KeyProblem(f"overrides.{name}", f"arch {self.arch} does not use {name} (it reads "
                                                      f"{', '.join(sorted(arch.options_read))}); delete the key")
        if self.teachers.vmamba is not None and not arch.uses_vmamba:
            raise KeyProblem("teachers.vmamba", f"arch {self.arch} has no VMamba teacher (only M3, M4 and full have "
                                                "one); delete the key")
        return self

    def recipe_overrides(self) -> dict[str, Any]:
        """The recipe keys this variant sets itself."""
        return self.train.model_dump(exclude_none=True)


class EvalParams(_Section):
    sigma: PositiveFloat = 4.0
    batch_size: PositiveInt = 10
    scorings: Annotated[list[ScoringName], Field(min_length=1)] = [scoring.value for scoring in Scoring]
    aupro_fpr_limit: Annotated[float, Field(gt=0, le=1)] = 0.3
    save_maps: NonNegativeInt = 8
    # which AUROC picks best_of_test's epoch: every image's (per_image) or the authors' evaluator, which scores
    # each batch of batch_size by its first image (official_first_image, pdd.engine.selection)
    selection_scorer: Literal["per_image", "official_first_image"] = "per_image"
    tf32: bool = False  # as train.tf32, for scoring

    @model_validator(mode="after")
    def _unique_scorings(self) -> EvalParams:
        if len(set(self.scorings)) != len(self.scorings):
            raise KeyProblem("scorings", f"lists a scoring twice: {self.scorings}")
        return self


class PlanEntry(_Section):
    datasets: Annotated[list[Name], Field(min_length=1)]
    variants: Annotated[list[Name], Field(min_length=1)]
    fidelities: Annotated[list[FidelityName], Field(min_length=1)] | None = None  # None: [model.fidelity]


class UncertaintyParams(_Section):
    """How the replication report puts an interval on each number (`pdd.reporting.uncertainty`)."""

    level: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95  # of every interval; claims are tested at 1 - level
    resamples: Annotated[int, Field(ge=100)] = 10_000  # bootstrap resamples of the test images
    seed: Seed = 0  # of the resampling (each test set draws from its own stream of it)
    bootstrap: Literal["BCa", "percentile", "basic"] = "BCa"  # scipy.stats.bootstrap's method
    auroc_interval: Literal["delong", "bootstrap"] = "delong"  # the AUROC interval verdicts and claims use
    delong_scale: Literal["logit", "identity"] = "logit"  # where DeLong's normal interval is symmetric


class ReportingParams(_Section):
    selection: Literal["best_of_test", "last"] = "best_of_test"
    gap_tolerance: UnitInterval = 0.03
    uncertainty: UncertaintyParams = UncertaintyParams()
    explain_datasets: list[Name] = ["headct", "brainmri"]
    # Figs. 4/5 put M1's and PDD's maps side by side on HeadCT and ZhangLab: runs no table needs
    figure_runs: list[PlanEntry] = [PlanEntry(datasets=["headct", "zhanglab"], variants=["rd4ad", "full"])]


class Params(PlanQueries, _Section):
    """The resolved, validated params: the profile and overrides are already applied."""

    profile: Name = BASE_PROFILE
    paths: PathsParams
    data: DataParams
    teachers: TeachersParams
    model: ModelParams
    variants: Annotated[dict[Name, VariantParams], Field(min_length=1)]
    train: TrainParams
    eval: EvalParams
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0]
    plan: dict[Name, list[PlanEntry]] = {}
    reporting: ReportingParams = ReportingParams()
    profiles: dict[Name, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _references_exist(self) -> Params:
        if len(set(self.seeds)) != len(self.seeds):
            raise KeyProblem("seeds", f"lists a seed twice: {self.seeds}")
        unknown = [name for name in self.reporting.explain_datasets if name not in self.data.datasets]
        if unknown:
            raise KeyProblem("reporting.explain_datasets", f"{', '.join(unknown)} not defined in data.datasets")
        for table, entries in [*self.plan.items(), ("reporting.figure_runs", self.reporting.figure_runs)]:
            for index, entry in enumerate(entries):
                for field, names, known in (("datasets", entry.datasets, self.data.datasets),
                                            ("variants", entry.variants, self.variants)):
                    unknown = [name for name in names if name not in known]
                    if unknown:
                        where = table if table.startswith("reporting.") else f"plan.{table}"
                        raise KeyProblem(f"{where}.{index}.{field}",
                                       f"{', '.join(unknown)} not defined; defined: {', '.join(known)}")
        return self

    @model_validator(mode="after")
    def _variant_recipes_resolve(self) -> Params:
        """Every variant's recipe is a valid recipe, and sets only keys its schedule reads."""
        for name, variant in self.variants.items():
            own = variant.recipe_overrides()
            if not own:
                continue
            try:
                recipe = self.recipe(name)
            except ValidationError as exc:
                error = exc.errors()[0]
                problem = (error.get("ctx") or {}).get("error")
                key, message = (problem.key, problem.message) if isinstance(problem, KeyProblem) else (
                    ".".join(map(str, error["loc"])), error["msg"])
                where = f"variants.{name}.train.{key}" if key in own else f"train.{key}"
                raise KeyProblem(where, f"{message} (in the recipe of variant {name}: train, then "
                                        f"variants.{name}.train on top)") from None
            for key in own:
                if key in recipe.unread:
                    reads = ", ".join(SCHEDULE_KEYS[recipe.schedule]) or "neither t_max nor eta_min"
                    raise KeyProblem(f"variants.{name}.train.{key}",
                                     f"is not read: variant {name} trains with schedule {recipe.schedule}, which "
                                     f"reads {reads}; delete the key")
        return self

    @model_validator(mode="after")
    def _one_pin_per_weights_file(self) -> Params:
        """Two teacher entries naming one file must pin it alike (one weights job fetches it)."""
        seen: dict[str, tuple[str, Any]] = {}
        for job in self.weights_jobs(every_entry=True):
            pins = (job.settings.url, job.settings.sha256)
            where = f"{'.'.join(job.key_prefix)}.file"
            if job.settings.file in seen and seen[job.settings.file][1] != pins:
                raise KeyProblem(where, f"names {job.settings.file} like {seen[job.settings.file][0]}, but pins "
                                        f"another url/sha256; one file has one pin: use another file name")
            seen.setdefault(job.settings.file, (where, pins))
        return self

    @model_validator(mode="after")
    def _paper_tables_get_their_arms(self) -> Params:
        """A paper table in the plan must be able to get every run it renders (`pdd.reporting.arms`)."""
        from pdd.reporting.arms import plan_arm_problems  # the arms are declared beside the published numbers

        problem = next(plan_arm_problems(self), None)
        if problem is not None:
            raise KeyProblem(*problem)
        return self

    # ---- derived values the engine, the data CLI and the workflow need -------------------------

    @property
    def synthetic_data(self) -> bool:
        """True when every dataset is the synthetic stand-in (`pdd.data.synthetic`) instead of the real one."""
        return self.data.source == "synthetic"

    @property
    def random_teachers(self) -> bool:
        """True when the teachers keep their random init (no pretrained weights): features, not results."""
        return not self.teachers.pretrained

    @property
    def demo_only(self) -> bool:
        """Synthetic data or random teachers: what this trains or draws measures nothing, so metrics.json's
        `run.demo` records it and tables and figures carry the demo banner."""
        return self.synthetic_data or self.random_teachers

    def sha256(self) -> str:
        """Hash of the resolved params (profiles excluded: they are already applied)."""
        return _sha256_json(self.model_dump(mode="json", exclude={"profiles"}))

    def cache_dtype(self, fidelity: str) -> str:
        """The teacher cache's storage dtype (a torch dtype name) for runs of `fidelity`.

        `train.cache_fp16: null` stores float32 under `code`, whose promise is the official numerics (fp16
        moves the students by 1e-3 relative at the first step, docs/model.md), and float16 under `paper`;
        true or false chooses for both."""
        fp16 = self.train.cache_fp16
        return "float16" if (fidelity != Fidelity.CODE.value if fp16 is None else fp16) else "float32"

    def teacher_cache_enabled(self, dataset: str, device_type: str = "cpu") -> bool:
        """Whether runs on `dataset` read the teachers' features from the disk cache on a `device_type` device.

        `auto` caches on the CPU and recomputes on CUDA: a 256² image's features are ~4.6 MB in fp16 (both
        teachers), and reading them back can be slower than a GPU's forward of the frozen teachers, while on a
        CPU a cache hit replaces ~3.4 s an image of teacher forward (benchmarks/README.md). Planning without a device (`pdd params plan
        --disk`) asks for the CPU: the most disk `auto` can take."""
        own = self.dataset(dataset).teacher_cache
        setting = self.train.teacher_cache if own is None else own
        return device_type != "cuda" if setting == "auto" else setting

    def loader_workers(self, device_type: str = "cpu") -> int:
        """Data-loading processes for a model on a `device_type` device (`train.num_workers`).

        `auto` loads in the training process on the CPU and with 2 persistent workers on CUDA. With ready pixels
        (`pdd.data.pixel_store`) a batch costs a few milliseconds to load, while a worker forked from the
        training process makes it copy every heap page it writes while the worker lives (copy-on-write: 255,000
        page faults and 2.3x the CPU time per step at 192², batch 4, benchmarks/README.md) and competes with the
        step for the cores. On CUDA the host heap is small and workers let loading overlap the GPU's step."""
        workers = self.train.num_workers
        if workers == "auto":
            return 2 if device_type == "cuda" else 0
        return workers

    def variant(self, name: str) -> VariantParams:
        if name not in self.variants:
            raise ConfigError(f"unknown variant {name!r}; defined in params.variants: {', '.join(self.variants)}")
        return self.variants[name]

    def recipe(self, variant: str | None = None) -> TrainParams:
        """The training recipe of `variant`'s runs: `train`, then `variants.<variant>.train` on top (a variant's
        own value wins over the global one, whatever set either: the file, a profile or `--set`). None: `train`.
        The one place a recipe is resolved: training, evaluation, fingerprints and the disk plan read it."""
        own = self.variant(variant).recipe_overrides() if variant is not None else {}
        if not own:
            return self.train
        return TrainParams.model_validate({**self.train.model_dump(), **own})

    def teachers_of(self, variant: str | None = None) -> TeachersParams:
        """The teachers of `variant`'s runs: `teachers`, each entry `variants.<variant>.teachers` names replaced
        whole (its tag, file and pins). None: `teachers`."""
        if variant is None:
            return self.teachers
        own = {name: entry for name, entry in self.variant(variant).teachers if entry is not None}
        return self.teachers.model_copy(update=own) if own else self.teachers

    def model_options(self, variant: str, fidelity: str | None = None) -> dict[str, Any]:
        """`build_pdd` keyword options: the fidelity's, then the variant's overrides on top."""
        fidelity = fidelity or self.model.fidelity
        if fidelity not in FIDELITIES:
            raise ConfigError(f"unknown fidelity {fidelity!r}; use one of: {', '.join(FIDELITIES)}")
        options = self.model.fidelities.get(fidelity, ModelOptions()).as_kwargs()
        options.update(self.variant(variant).overrides.as_kwargs())
        return options

    def teacher_options(self, variant: str | None = None) -> dict[str, Any]:
        """`build_pdd` keyword options that choose the teachers' weights (`variant`'s own, `teachers_of`)."""
        teachers = self.teachers_of(variant)
        pretrained = teachers.pretrained
        return {"pretrained": pretrained, "wrn_tag": teachers.wrn50.tag, "teacher_seed": teachers.init_seed,
                "wrn_weights": teachers.wrn50.file if pretrained else None,
                "vmamba_weights": teachers.vmamba.file if pretrained else None}

    def build_options(self, variant: str, fidelity: str | None = None) -> dict[str, Any]:
        """Everything `build_pdd(params.variant(v).arch, fidelity, **options)` needs for this run."""
        return {**self.teacher_options(variant), **self.model_options(variant, fidelity), "map_sigma": self.eval.sigma}

    def dataset(self, name: str) -> DatasetParams:
        if name not in self.data.datasets:
            raise ConfigError(f"unknown dataset {name!r}; defined in params.data.datasets: "
                              f"{', '.join(self.data.datasets)}")
        return self.data.datasets[name]

    def dataset_seed(self, name: str) -> int:
        seed = self.dataset(name).seed
        return self.data.split_seed if seed is None else seed

    def raw_dir(self, dataset: str) -> Path:
        """Where the dataset's raw files are: a folder dataset's own root, else paths.raw/<dataset>."""
        entry = self.dataset(dataset)
        return Path(entry.root) if entry.kind == "folder" else Path(self.paths.raw) / dataset

    def prepared_dir(self, dataset: str) -> Path:
        self.dataset(dataset)
        return Path(self.paths.prepared) / dataset

    def run_dir(self, dataset: str, variant: str, fidelity: str, seed: int) -> Path:
        self.dataset(dataset)
        self.variant(variant)
        return Path(self.paths.results) / RunSpec(dataset, variant, fidelity, seed).relative_dir

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _sha256_json(document: Any) -> str:
    payload = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
