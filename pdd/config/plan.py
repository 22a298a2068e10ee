"""What the params imply: the runs each table needs and the fingerprint of every job.

`Params` mixes `PlanQueries` in, so `params.plan_runs("table1")` and `params.fingerprint(run, "train")`
read as questions to the params; Snakemake lays out its DAG from `plan_summary` (`pdd params plan
--json`) and DVC's stages come from the same plan (`pdd.config.dvc_pipeline`). Which keys a job reads
is `pdd.config.fingerprints`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pdd.config.fingerprints import (
    EXPLAIN,
    FIGURES,
    REPLICATION_REPORT,
    REPORT_OUTPUTS,
    TEACHERS,
    Fingerprint,
    Stage,
    fingerprint_of,
    keys_of,
)
from pdd.errors import ConfigError

if TYPE_CHECKING:
    from pdd.config.schema import PlanEntry


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


class WeightsJob(NamedTuple):
    """One teacher weights file to fetch: a global teacher's (`wrn50`) or a variant's own (`wrn50@rd4ad`)."""

    name: str
    teacher: str
    variant: str | None
    settings: Any  # schema.WeightsParams

    @property
    def key_prefix(self) -> tuple[str, ...]:
        """Where its settings live in params: `teachers.<t>` or `variants.<v>.teachers.<t>`."""
        return ("teachers", self.teacher) if self.variant is None else ("variants", self.variant, "teachers",
                                                                         self.teacher)


class PlanQueries:
    """The plan's questions, answered from the validated fields of `pdd.config.schema.Params`."""

    def fingerprint(self, target: RunSpec | str, stage: Stage | str) -> Fingerprint:
        """The hash of what job (`target`, `stage`) reads and the dotted keys it covers (`pdd.config.fingerprints`).

        `target`: a RunSpec for train and evaluate (and prepare, for its dataset); `data/<dataset>` or
        `weights/<teacher>` for prepare; a table name, `replication_report`, `figures` or `explain` for tables.
        """
        return fingerprint_of(self, keys_of(self, target, stage))

    def weights_jobs(self, variants: list[str] | None = None, every_entry: bool = False) -> list[WeightsJob]:
        """The teacher files to fetch: both global teachers', then each variant's own (of `variants`, default all)
        whose file no earlier job fetches; `every_entry` keeps those too (validation compares their pins)."""
        jobs = [WeightsJob(teacher, teacher, None, getattr(self.teachers, teacher)) for teacher in TEACHERS]
        files = {job.settings.file for job in jobs}
        for name in self.variants if variants is None else variants:
            for teacher, entry in self.variant(name).teachers:
                if entry is not None and (every_entry or entry.file not in files):
                    jobs.append(WeightsJob(f"{teacher}@{name}", teacher, name, entry))
                    files.add(entry.file)
        return jobs

    def weights_job(self, name: str) -> WeightsJob:
        """The weights job `name` (`wrn50`, `wrn50@rd4ad`)."""
        jobs = {job.name: job for job in self.weights_jobs()}
        if name not in jobs:
            raise ConfigError(f"unknown weights job {name!r}; params define: {', '.join(jobs)}")
        return jobs[name]

    def run_weights(self, variant: str) -> list[str]:
        """The teacher files `variant`'s runs load (none with random-init teachers)."""
        from pdd.models.options import Variant

        teachers = self.teachers_of(variant)
        if not teachers.pretrained:
            return []
        used = TEACHERS if Variant(self.variant(variant).arch).uses_vmamba else ("wrn50",)
        return [getattr(teachers, teacher).file for teacher in used]

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
        report_jobs = [*tables, REPLICATION_REPORT, FIGURES, EXPLAIN]
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
            # the global teachers' files (the runs' and Fig. 1's) and the planned variants' own
            "weights": {job.name: {"file": job.settings.file, "teacher": job.teacher, "variant": job.variant,
                                   "rule": re.sub(r"\W", "_", job.name),
                                   "fingerprint": self.fingerprint(f"weights/{job.name}", Stage.PREPARE)._asdict()}
                        for job in self.weights_jobs(list(dict.fromkeys(run.variant for run in runs)))
                        } if self.teachers.pretrained else {},
            "reports": {job: self.fingerprint(job, Stage.TABLES)._asdict() for job in report_jobs},
            "report_outputs": list(REPORT_OUTPUTS),
            "tables": {name: [run.id for run in self.plan_runs(name)] for name in tables},
            "runs": [{"id": run.id, **run._asdict(), "arch": self.variant(run.variant).arch,
                      "run_dir": str(self.run_dir(*run)), "weights": self.run_weights(run.variant),
                      "recipe": self.recipe(run.variant).model_dump(mode="json"),
                      "fingerprints": {stage.value: self.fingerprint(run, stage)._asdict()
                                       for stage in (Stage.TRAIN, Stage.EVALUATE)},
                      "tables": [name for name in tables if run in self.plan_runs(name)]} for run in runs],
        }
