"""`params.yaml`, validated: every run, rule and stage reads its settings through `load_params`.

Validation happens before any job starts, so a typo or an out-of-range value costs seconds, not a
GPU-day. Errors name the dotted key (`train.lr`) and say what is allowed. Profiles (`profiles.demo`)
and `--set key=value` overrides are dotted-key edits applied before validation, so they are checked
exactly like the file itself.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, NamedTuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model, model_validator

from pdd.errors import ConfigError
from pdd.fingerprints import EXPLAIN, FIGURES, REPLICATION_GAP, TEACHERS, Fingerprint, Stage, fingerprint_of, keys_of
from pdd.models.options import (
    WRN50_TAGS,
    Fidelity,
    FidelityName,
    NonNegativeFloat,
    PDDOptions,
    Scoring,
    ScoringName,
    UnitInterval,
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


class _Problem(ValueError):
    """A cross-field problem located at `key` below the model that raised it."""

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


class DatasetParams(_Section):
    """One dataset: a paper dataset of the registry (`kind: registry`, the default) or a user's own folder."""

    kind: Literal["registry", "folder"] = "registry"
    root: NonEmptyStr | None = None  # folder: where the images are (pdd.data.folder)
    layout: Literal["mvtec", "csv"] = "mvtec"  # folder: train/good + test/<anomaly> trees, or a labels table
    csv: NonEmptyStr | None = None  # folder, layout csv: the table, relative to root (default labels.csv)
    normal_test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.4  # folder: normals drawn into test when unsplit
    seed: Seed | None = None  # None: data.split_seed
    classes: Annotated[list[Name], Field(min_length=1)] | None = None
    teacher_cache: bool | None = None  # None: train.teacher_cache

    @model_validator(mode="after")
    def _folder_has_a_root(self) -> DatasetParams:
        if self.kind == "folder" and self.root is None:
            raise _Problem("root", "a folder dataset needs root: the folder holding its images")
        if self.kind == "registry":
            for key in ("root", "csv"):
                if getattr(self, key) is not None:
                    raise _Problem(key, "only a folder dataset (kind: folder) has one; paper datasets are "
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
            raise _Problem("image_size", f"must be a multiple of 32 and at least 32 (the teachers downsample "
                                         f"by 32), got {self.image_size}")
        return self


class WeightsParams(_Section):
    file: NonEmptyStr
    url: NonEmptyStr | None = None
    sha256: Sha256 | None = None  # None: not pinned


class WideResNetParams(WeightsParams):
    tag: Literal[WRN50_TAGS] = PDDOptions.wrn_tag  # timm pretrained tag


class TeachersParams(_Section):
    pretrained: bool = True
    init_seed: Seed = 0
    vmamba: WeightsParams
    wrn50: WideResNetParams


class _ModelOptionsSection(_Section):
    def as_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _params_hint(hint: Any) -> Any:
    """An option's type as params.yaml holds it: an enum by its plain value, optional (None: the default)."""
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        hint = values_literal(hint)
    return hint | None


# Generated from PDDOptions' tunable fields, so their types and ranges are declared once (docs/model.md)
ModelOptions = create_model(
    "ModelOptions",
    __base__=_ModelOptionsSection,
    __doc__="Options forwarded to `pdd.models.build_pdd`; None leaves the model's own default.",
    **{name: (_params_hint(hint), None) for name, hint in PDDOptions.tunable_fields().items()},
)


class ModelParams(_Section):
    fidelity: FidelityName = Fidelity.CODE.value
    fidelities: dict[FidelityName, ModelOptions] = {}


class VariantParams(_Section):
    arch: VariantName
    overrides: ModelOptions = ModelOptions()


class TrainParams(_Section):
    optimizer: Literal["adam"] = "adam"
    lr: PositiveFloat
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)]
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal["cosine_periodic", "cosine_single"] = "cosine_periodic"
    t_max: PositiveInt
    eta_min: NonNegativeFloat
    epochs: PositiveInt
    batch_size: PositiveInt
    eval_every: PositiveInt  # a weights snapshot every N epochs (and at the end): what `pdd evaluate` selects from
    keep_snapshots: Literal["all", "selected"] = "all"  # selected: `pdd evaluate` prunes the unselected ones
    teacher_cache: bool = True
    cache_fp16: bool | None = None  # None: fp32 under fidelity code (its exact numerics), fp16 under paper
    bf16_autocast: bool = False
    deterministic: bool = True
    num_workers: NonNegativeInt = 0

    @model_validator(mode="after")
    def _eta_min_below_lr(self) -> TrainParams:
        if self.eta_min > self.lr:
            raise _Problem("eta_min", f"must not exceed train.lr ({self.lr}), got {self.eta_min}")
        return self


class EvalParams(_Section):
    sigma: PositiveFloat = 4.0
    batch_size: PositiveInt = 10
    scorings: Annotated[list[ScoringName], Field(min_length=1)] = [scoring.value for scoring in Scoring]
    aupro_fpr_limit: Annotated[float, Field(gt=0, le=1)] = 0.3
    save_maps: NonNegativeInt = 8
    # which AUROC picks best_of_test's epoch: every image's (per_image) or the authors' evaluator, which scores
    # each batch of batch_size by its first image (official_first_image, pdd.engine.selection)
    selection_scorer: Literal["per_image", "official_first_image"] = "per_image"

    @model_validator(mode="after")
    def _unique_scorings(self) -> EvalParams:
        if len(set(self.scorings)) != len(self.scorings):
            raise _Problem("scorings", f"lists a scoring twice: {self.scorings}")
        return self


class PlanEntry(_Section):
    datasets: Annotated[list[Name], Field(min_length=1)]
    variants: Annotated[list[Name], Field(min_length=1)]
    fidelities: Annotated[list[FidelityName], Field(min_length=1)] | None = None  # None: [model.fidelity]


class ReportingParams(_Section):
    selection: Literal["best_of_test", "last"] = "best_of_test"
    gap_tolerance: UnitInterval = 0.03
    explain_datasets: list[Name] = ["headct", "brainmri"]
    # Figs. 4/5 put M1's and PDD's maps side by side on HeadCT and ZhangLab: runs no table needs
    figure_runs: list[PlanEntry] = [PlanEntry(datasets=["headct", "zhanglab"], variants=["M1", "full"])]


class RunSpec(NamedTuple):
    """One training run; `params.run_dir(*spec)` is where everything it produces goes."""

    dataset: str
    variant: str
    fidelity: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.variant}/{self.fidelity}/seed{self.seed}"

    @property
    def relative_dir(self) -> Path:
        """The run directory below a results root: `<dataset>/<variant>/<fidelity>/seed<k>`."""
        return Path(self.id)


class Params(_Section):
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
            raise _Problem("seeds", f"lists a seed twice: {self.seeds}")
        unknown = [name for name in self.reporting.explain_datasets if name not in self.data.datasets]
        if unknown:
            raise _Problem("reporting.explain_datasets", f"{', '.join(unknown)} not defined in data.datasets")
        for table, entries in [*self.plan.items(), ("reporting.figure_runs", self.reporting.figure_runs)]:
            for index, entry in enumerate(entries):
                for field, names, known in (("datasets", entry.datasets, self.data.datasets),
                                            ("variants", entry.variants, self.variants)):
                    unknown = [name for name in names if name not in known]
                    if unknown:
                        where = table if table.startswith("reporting.") else f"plan.{table}"
                        raise _Problem(f"{where}.{index}.{field}",
                                       f"{', '.join(unknown)} not defined; defined: {', '.join(known)}")
        return self

    @model_validator(mode="after")
    def _paper_tables_get_their_arms(self) -> Params:
        """A paper table in the plan must be able to get every run it renders (`pdd.reporting.arms`)."""
        from pdd.reporting.arms import plan_arm_problems  # the arms are declared beside the published numbers

        problem = next(plan_arm_problems(self), None)
        if problem is not None:
            raise _Problem(*problem)
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

    def fingerprint(self, target: RunSpec | str, stage: Stage | str) -> Fingerprint:
        """The hash of what job (`target`, `stage`) reads and the dotted keys it covers (`pdd.fingerprints`).

        `target`: a RunSpec for train and evaluate (and prepare, for its dataset); `data/<dataset>` or
        `weights/<teacher>` for prepare; a table name, `replication_gap`, `figures` or `explain` for tables.
        """
        return fingerprint_of(self, keys_of(self, target, stage))

    def cache_dtype(self, fidelity: str) -> str:
        """The teacher cache's storage dtype (a torch dtype name) for runs of `fidelity`.

        `train.cache_fp16: null` stores float32 under `code`, whose promise is the official numerics (fp16
        moves the students by 1e-3 relative at the first step, docs/model.md), and float16 under `paper`;
        true or false chooses for both."""
        fp16 = self.train.cache_fp16
        return "float16" if (fidelity != Fidelity.CODE.value if fp16 is None else fp16) else "float32"

    def teacher_cache_enabled(self, dataset: str) -> bool:
        own = self.dataset(dataset).teacher_cache
        return self.train.teacher_cache if own is None else own

    def variant(self, name: str) -> VariantParams:
        if name not in self.variants:
            raise ConfigError(f"unknown variant {name!r}; defined in params.variants: {', '.join(self.variants)}")
        return self.variants[name]

    def model_options(self, variant: str, fidelity: str | None = None) -> dict[str, Any]:
        """`build_pdd` keyword options: the fidelity's, then the variant's overrides on top."""
        fidelity = fidelity or self.model.fidelity
        if fidelity not in FIDELITIES:
            raise ConfigError(f"unknown fidelity {fidelity!r}; use one of: {', '.join(FIDELITIES)}")
        options = self.model.fidelities.get(fidelity, ModelOptions()).as_kwargs()
        options.update(self.variant(variant).overrides.as_kwargs())
        return options

    def teacher_options(self) -> dict[str, Any]:
        """`build_pdd` keyword options that choose the teachers' weights."""
        pretrained = self.teachers.pretrained
        return {"pretrained": pretrained, "wrn_tag": self.teachers.wrn50.tag, "teacher_seed": self.teachers.init_seed,
                "wrn_weights": self.teachers.wrn50.file if pretrained else None,
                "vmamba_weights": self.teachers.vmamba.file if pretrained else None}

    def build_options(self, variant: str, fidelity: str | None = None) -> dict[str, Any]:
        """Everything `build_pdd(params.variant(v).arch, fidelity, **options)` needs for this run."""
        return {**self.teacher_options(), **self.model_options(variant, fidelity), "map_sigma": self.eval.sigma}

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

    def plan_runs(self, table: str | None = None) -> list[RunSpec]:
        """The runs `table` needs (every table's and figure's when None), in plan order, without duplicates."""
        if table is not None and table not in self.plan:
            raise ConfigError(f"unknown table {table!r}; params.plan defines: {', '.join(self.plan) or 'none'}")
        entries = self.plan[table] if table is not None else [
            *(entry for entries in self.plan.values() for entry in entries), *self.reporting.figure_runs]
        return self._runs_of(entries)

    def _runs_of(self, entries: list[PlanEntry]) -> list[RunSpec]:
        runs: dict[RunSpec, None] = {}
        for entry in entries:
            for dataset in entry.datasets:
                for variant in entry.variants:
                    for fidelity in entry.fidelities or [self.model.fidelity]:
                        for seed in self.seeds:
                            runs[RunSpec(dataset, variant, fidelity, seed)] = None
        return list(runs)

    def plan_summary(self, table: str | None = None) -> dict[str, Any]:
        """Everything a workflow engine needs to lay out the DAG of `table` (all when None), as JSON."""
        runs = self.plan_runs(table)
        tables = [table] if table is not None else list(self.plan)
        datasets = list(dict.fromkeys([*(run.dataset for run in runs), *self.reporting.explain_datasets]))
        report_jobs = [*tables, REPLICATION_GAP, FIGURES, EXPLAIN]
        return {
            "profile": self.profile,
            "params_sha256": self.sha256(),
            "synthetic_data": self.synthetic_data,
            "paths": self.paths.model_dump(),
            "synthetic": self.data.synthetic.model_dump() if self.synthetic_data else None,
            "datasets": {name: {"raw_dir": str(self.raw_dir(name)), "prepared_dir": str(self.prepared_dir(name)),
                                "seed": self.dataset_seed(name), "classes": self.dataset(name).classes,
                                "fingerprint": self.fingerprint(f"data/{name}", Stage.PREPARE)._asdict()}
                         for name in datasets},
            "explain_datasets": self.reporting.explain_datasets,
            "weights": {name: {"file": getattr(self.teachers, name).file,
                               "fingerprint": self.fingerprint(f"weights/{name}", Stage.PREPARE)._asdict()}
                        for name in TEACHERS} if self.teachers.pretrained else {},
            "reports": {job: self.fingerprint(job, Stage.TABLES)._asdict() for job in report_jobs},
            "tables": {name: [run.id for run in self.plan_runs(name)] for name in tables},
            "runs": [{"id": run.id, **run._asdict(), "arch": self.variant(run.variant).arch,
                      "run_dir": str(self.run_dir(*run)),
                      "fingerprints": {stage.value: self.fingerprint(run, stage)._asdict()
                                       for stage in (Stage.TRAIN, Stage.EVALUATE)},
                      "tables": [name for name in tables if run in self.plan_runs(name)]} for run in runs],
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _sha256_json(document: Any) -> str:
    payload = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# ---- loading ------------------------------------------------------------------------------------


def load_params(path: str | Path = "params.yaml", overrides: Iterable[str] = (),
                profile: str | None = None) -> Params:
    """Read, override and validate `path`; raise ConfigError naming the offending key.

    Precedence, lowest first: the file, the profile's dotted keys, `overrides` (`key=value`, the
    value parsed as YAML). The profile is `profile`, else `--set profile=...`, else the file's.
    """
    path = Path(path)
    tree = _read_yaml(path)
    edits = [_parse_override(text) for text in overrides]
    active = profile or next((value for key, value in reversed(edits) if key == "profile"), None) \
        or tree.get("profile") or BASE_PROFILE
    origins: dict[str, str] = {}
    if not isinstance(active, str):
        raise ConfigError(f"profile: must be a profile name, got {active!r}")
    profiles = tree.get("profiles") or {}
    if active != BASE_PROFILE or active in profiles:
        if not isinstance(profiles, dict) or active not in profiles:
            defined = [BASE_PROFILE, *(profiles if isinstance(profiles, dict) else [])]
            raise ConfigError(f"profile: unknown profile {active!r}; defined: {', '.join(defined)} "
                              f"(add it under `profiles:` in {path})")
        profile_edits = profiles[active]
        if not isinstance(profile_edits, dict):
            raise ConfigError(f"profiles.{active}: must map dotted keys to values, got {profile_edits!r}")
        for key, value in profile_edits.items():
            _set_dotted(tree, str(key), value, source=f"profiles.{active}")
            origins[str(key)] = f"profile {active!r}"
    for key, value in edits:
        if key != "profile":
            _set_dotted(tree, key, value, source="--set")
            origins[key] = "--set"
    tree["profile"] = active
    _refuse_removed_keys(tree, path)
    try:
        return Params.model_validate(tree)
    except ValidationError as exc:
        raise _config_error(exc, path, origins) from None


# Keys earlier pdd versions knew, and what to do instead: a clear message rather than "unknown key"
REMOVED_KEYS = {
    ("train", "checkpoint_every"): "training now keeps one resumable checkpoints/last.pt (replaced every epoch, "
    "deleted when the run completes) and a weights snapshot every train.eval_every epochs; delete the key",
}


def _refuse_removed_keys(tree: dict[str, Any], path: Path) -> None:
    for key, what_to_do in REMOVED_KEYS.items():
        node: Any = tree
        for part in key[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key[-1] in node:
            raise ConfigError(f"{path}: {'.'.join(key)} was removed: {what_to_do}")


def add_params_arguments(parser: argparse.ArgumentParser) -> None:
    """`--params FILE --profile P --set KEY=VALUE...`: the same three options on every `pdd` command."""
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="params file (default: %(default)s)")
    parser.add_argument("--profile", default=None, help="apply profiles.<PROFILE> (default: the file's `profile`)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted-key override, value parsed as YAML (repeatable), e.g. train.epochs=3")


def params_from_args(args: argparse.Namespace) -> Params:
    """The params selected by `add_params_arguments`' options."""
    return load_params(args.params, overrides=args.overrides, profile=args.profile)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"params file {path} not found; run from the repository root or pass --params FILE")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must be a YAML mapping of sections (paths, data, train, ...)")
    return tree


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.epochs=3")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: the value {value!r} is not valid YAML ({exc})") from None


def _set_dotted(tree: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c` in nested dicts/lists, creating mappings as needed.

    Names may contain dots (`variants.tau-0.30-0.75.overrides.tau_low`): at each level the longest
    existing key that matches wins.
    """
    parts = key.split(".")
    node: Any = tree
    done: list[str] = []
    while parts:
        if isinstance(node, dict):
            width = next((n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in node), 1)
            step: Any = ".".join(parts[:width])
        elif isinstance(node, list) and parts[0].isdigit() and int(parts[0]) < len(node):
            width, step = 1, int(parts[0])
        else:
            raise ConfigError(f"{key} (from {source}): {'.'.join(done) or 'the top level'} is "
                              f"{type(node).__name__} {node!r}, which has no key {parts[0]!r}")
        parts = parts[width:]
        done.append(str(step))
        if not parts:
            node[step] = value
        else:
            if isinstance(node, dict) and node.get(step) is None:
                node[step] = {}
            node = node[step]


def _config_error(exc: ValidationError, path: Path, origins: dict[str, str]) -> ConfigError:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        problem = (error.get("ctx") or {}).get("error")
        if isinstance(problem, _Problem):
            key, message = ".".join([*loc, problem.key]), problem.message
        elif error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            key, message = ".".join(loc), "unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        else:
            key = ".".join(loc)
            got = repr(error["input"])
            message = f"{error['msg']} (got {got[:60] + '...' if len(got) > 60 else got})"
        origin = next((origins[k] for k in origins if key == k or key.startswith(k + ".")), None)
        lines.append(f"  {key}: {message}" + (f" [set by {origin}]" if origin else ""))
    return ConfigError(f"{path} is invalid:\n" + "\n".join(lines) +
                       f"\nFix the value in {path} (or the profile / --set override that sets it); "
                       "`pdd params check` re-validates without running anything.")


def _allowed_keys(loc: list[str]) -> list[str]:
    """Field names of the section at `loc` (dotted path into Params), for 'unknown key' hints."""
    annotation: Any = Params
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if part not in annotation.model_fields:
                return []
            annotation = annotation.model_fields[part].annotation
        elif typing.get_origin(annotation) in (dict, list):
            annotation = typing.get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and `| None` so the section type underneath shows."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) in (Union, types.UnionType):
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        else:
            return annotation
