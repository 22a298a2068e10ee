"""Which params keys each job of the pipeline reads: the one definition of "what a job is".

Every job (prepare a dataset, fetch a teacher, train a run, evaluate it, render a table) hashes exactly
the resolved values of the keys it reads. Snakemake reruns a job when that hash changes (the rule's
`params:`), DVC when one of those keys changes (the stage's `params:`, generated from the same list), and
`pdd train --resume` continues a run only under the same train fingerprint. Nothing else hashes params.

Each key has one *owner*: the earliest stage that reads it. A key changes the jobs that read it and,
through their output files, everything downstream of them — never anything upstream, so `eval.*` never
touches training and `reporting.uncertainty.*` only the replication report. Keys no job reads are locations or
execution settings (`LOCATION_KEYS`): they say where files go or how fast a job runs, not what it computes.
"""

from __future__ import annotations

import enum
import hashlib
import json
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

if TYPE_CHECKING:
    from pdd.config.plan import RunSpec
    from pdd.config.schema import Params

Key = tuple[str, ...]


class Stage(str, enum.Enum):
    """The pipeline's stages, in order: a key read at one stage invalidates it and every later one."""

    PREPARE = "prepare"  # data preparation and teacher weights
    TRAIN = "train"
    EVALUATE = "evaluate"
    TABLES = "tables"  # tables, the replication report, figures, Grad-CAM

    @property
    def order(self) -> int:
        return list(Stage).index(self)


# Report jobs of the tables stage besides one job per table of the plan
REPLICATION_REPORT = "replication_report"
# what the replication report job writes into the tables folder (`pdd report`)
REPORT_OUTPUTS = ("replication_report.md", "replication_report.tex", "replication_report_forest.png",
                  "replication_report_forest.pdf")
FIGURES = "figures"
EXPLAIN = "explain"
TEACHERS = ("vmamba", "wrn50")

# Keys no job hashes, and why: moving a file or changing a worker count must never retrain anything.
# (a variant's own teacher file, `variants.<v>.teachers.<t>.file`, is one as well)
LOCATION_KEYS: dict[str, str] = {
    "profile": "chooses which profile is applied; the resolved values it yields are what jobs hash",
    "paths": "where files go; the files themselves are the jobs' inputs and outputs",
    "profiles": "applied before anything is hashed (see `profile`)",
    "train.num_workers": "data-loading processes: the same batches, only faster",
    "teachers.vmamba.file": "where the weights are; their sha256, checked when loaded, is the identity",
    "teachers.wrn50.file": "where the weights are; their sha256, checked when loaded, is the identity",
}


# what `pdd.data.folder` reads of a dataset entry (defaults, never read, for the registry's datasets)
FOLDER_KEYS = ("kind", "root", "layout", "csv", "normal_test_fraction")


class Fingerprint(NamedTuple):
    """A job's hash and the dotted keys it covers (rendered `a.b.c`; names may contain dots)."""

    sha256: str
    keys: tuple[str, ...]


def dotted(key: Key) -> str:
    return ".".join(key)


def leaf_keys(tree: Any, prefix: Key = ()) -> Iterator[Key]:
    """Every leaf of a nested mapping (lists and scalars are leaves)."""
    if isinstance(tree, dict) and tree:
        for name, value in tree.items():
            yield from leaf_keys(value, (*prefix, str(name)))
    else:
        yield prefix


def lookup(tree: dict[str, Any], key: Key) -> Any:
    node: Any = tree
    for part in key:
        node = node[part]
    return node


def fingerprint_of(params: Params, keys: list[Key]) -> Fingerprint:
    """Hash of {key: resolved value} over `keys` (the key set itself is part of the hash)."""
    tree = params.model_dump(mode="json")
    values = {dotted(key): lookup(tree, key) for key in keys}
    payload = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return Fingerprint(hashlib.sha256(payload.encode("utf-8")).hexdigest(), tuple(dotted(key) for key in keys))


def _section(params: Params, *prefix: str) -> list[Key]:
    return list(leaf_keys(lookup(params.model_dump(mode="json"), prefix), prefix))


# ---- what each job reads ------------------------------------------------------------------------


def data_keys(params: Params, dataset: str) -> list[Key]:
    """Preparing (or generating) one dataset: its source, split seed and, for a user's folder, where and how."""
    params.dataset(dataset)
    keys: list[Key] = [("data", "source"), ("data", "split_seed"), ("data", "datasets", dataset, "seed"),
                       *(("data", "datasets", dataset, name) for name in FOLDER_KEYS)]
    if params.data.source == "synthetic":
        keys += _section(params, "data", "synthetic")
    return keys


def weights_keys(params: Params, job: str) -> list[Key]:
    """Fetching one teacher file (`wrn50`, or a variant's own `wrn50@rd4ad`): where from and which file is right."""
    prefix = params.weights_job(job).key_prefix
    return [(*prefix, "url"), (*prefix, "sha256")]


def teacher_keys(params: Params, variant: str | None = None) -> list[Key]:
    """Which teachers a model gets: pretrained weights (identified by their sha256 when loaded) or a seed; the
    WRN50 tag is the variant's own where it names its teachers (`Params.teachers_of`)."""
    own = variant is not None and params.variant(variant).teachers.wrn50 is not None
    tag: Key = ("variants", variant, "teachers", "wrn50", "tag") if own else ("teachers", "wrn50", "tag")
    keys: list[Key] = [("teachers", "pretrained"), tag]
    if not params.teachers.pretrained:
        keys.append(("teachers", "init_seed"))
    return keys


def cache_keys(run: RunSpec) -> list[Key]:
    """The teacher-feature cache: with fp16 storage it changes the numbers, so training and evaluation read it."""
    return [("train", "teacher_cache"), ("train", "cache_fp16"), ("data", "datasets", run.dataset, "teacher_cache")]


def model_keys(params: Params, variant: str, fidelity: str) -> list[Key]:
    """The model a run builds: its variant (architecture and overrides) over its fidelity's options."""
    params.variant(variant)
    fidelity_options = _section(params, "model", "fidelities", fidelity) if fidelity in params.model.fidelities else []
    return [*fidelity_options, ("variants", variant, "arch"), *_section(params, "variants", variant, "overrides")]


# train.* keys that training does not read (execution) or that evaluation owns
_TRAIN_NOT_READ = {"num_workers", "keep_snapshots", "teacher_cache", "cache_fp16"}


def recipe_keys(params: Params, variant: str) -> list[Key]:
    """The recipe a run trains with (`Params.recipe`): each key the variant sets itself, else the global one,
    leaving out the schedule parameters its schedule does not read."""
    recipe, own = params.recipe(variant), params.variant(variant).recipe_overrides()
    return [("variants", variant, "train", name) if name in own else ("train", name)
            for name in type(recipe).model_fields if name not in _TRAIN_NOT_READ and name not in recipe.unread]


def train_keys(params: Params, run: RunSpec) -> list[Key]:
    """Training one run: image size and classes, teachers, model, the recipe (snapshot epochs included)."""
    return [("data", "image_size"), ("data", "datasets", run.dataset, "classes"), *teacher_keys(params, run.variant),
            *model_keys(params, run.variant, run.fidelity), *recipe_keys(params, run.variant), *cache_keys(run)]


def evaluate_keys(params: Params, run: RunSpec) -> list[Key]:
    """Evaluating one run: every eval setting, which snapshots to keep, and the cache it scores through."""
    return [*_section(params, "eval"), ("train", "keep_snapshots"), *cache_keys(run)]


def _presentation_keys() -> list[Key]:
    return [("reporting", "selection"), ("seeds",), ("model", "fidelity")]


def table_keys(params: Params, table: str) -> list[Key]:
    """One table: its plan entry, seeds, fidelity and selection; Table 5 also prints its arms' τ."""
    if table not in params.plan:
        raise KeyError(table)
    keys = [*_section(params, "plan", table), *_presentation_keys()]
    if table == "table5":
        for entry in params.plan[table]:
            for variant in entry.variants:
                keys += [key for key in model_keys(params, variant, params.model.fidelity) if key not in keys]
    return keys


def report_keys(params: Params, job: str) -> list[Key]:
    """A tables-stage job: a table of the plan, the replication report, the figures or the teachers' Grad-CAM.

    The replication report reads every plan table's runs as its table does, its tolerance and its
    uncertainty settings; the claims and the audit are package data (code), not params."""
    if job in params.plan:
        return table_keys(params, job)
    if job == REPLICATION_REPORT:
        keys = [("reporting", "gap_tolerance"), *_section(params, "reporting", "uncertainty")]
        for table in params.plan:
            keys += [key for key in table_keys(params, table) if key not in keys]
        return keys
    if job == FIGURES:
        return [*_section(params, "reporting", "figure_runs"), *_presentation_keys()]
    if job == EXPLAIN:
        datasets = params.reporting.explain_datasets
        return [("reporting", "explain_datasets"), ("data", "image_size"), *teacher_keys(params),
                *(("data", "datasets", name, "classes") for name in datasets)]
    raise KeyError(job)


def keys_of(params: Params, target: RunSpec | str, stage: Stage) -> list[Key]:
    """The keys the job (`target`, `stage`) reads.

    `target` is a RunSpec for train and evaluate; for prepare, `data/<dataset>` or `weights/<teacher>` (a
    RunSpec stands for its dataset); for tables, a table name, `replication_report`, `figures` or `explain`.
    """
    from pdd.config.plan import RunSpec

    stage = Stage(stage)
    if stage in (Stage.TRAIN, Stage.EVALUATE):
        if not isinstance(target, RunSpec):
            raise TypeError(f"the {stage.value} stage fingerprints a run (RunSpec), not {target!r}")
        return train_keys(params, target) if stage is Stage.TRAIN else evaluate_keys(params, target)
    if stage is Stage.PREPARE:
        kind, _, name = (f"data/{target.dataset}" if isinstance(target, RunSpec) else target).partition("/")
        if kind == "data":
            return data_keys(params, name)
        if kind == "weights" and name in {job.name for job in params.weights_jobs()}:
            return weights_keys(params, name)
        raise KeyError(f"unknown prepare job {target!r}; use data/<dataset> or weights/<"
                       f"{'|'.join(job.name for job in params.weights_jobs())}>")
    if isinstance(target, RunSpec):
        raise TypeError("the tables stage fingerprints a report job (a table name, replication_report, figures, "
                        "explain)")
    return report_keys(params, target)


def owners(params: Params) -> dict[str, Stage]:
    """Every dotted key some job reads -> the earliest stage whose jobs read it; a key absent is a location or
    execution setting."""
    owned: dict[str, Stage] = {}
    for stage, keys in _all_job_keys(params):
        for key in keys:
            owned.setdefault(key, stage)
    return owned


def _all_job_keys(params: Params) -> Iterator[tuple[Stage, set[str]]]:
    """(stage, keys read) of every job the params can define (any dataset, variant, fidelity, seed)."""
    from pdd.config.plan import RunSpec
    from pdd.config.schema import FIDELITIES

    runs = [RunSpec(d, v, f, s) for d in params.data.datasets for v in params.variants for f in FIDELITIES
            for s in params.seeds]
    yield Stage.PREPARE, {dotted(k) for d in params.data.datasets for k in data_keys(params, d)} | \
        {dotted(k) for job in params.weights_jobs() for k in weights_keys(params, job.name)}
    yield Stage.TRAIN, {dotted(k) for run in runs for k in train_keys(params, run)}
    yield Stage.EVALUATE, {dotted(k) for run in runs for k in evaluate_keys(params, run)}
    yield Stage.TABLES, {dotted(k) for job in [*params.plan, REPLICATION_REPORT, FIGURES, EXPLAIN]
                         for k in report_keys(params, job)}
