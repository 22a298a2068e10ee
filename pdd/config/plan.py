"""What the params imply: the runs each table needs and the fingerprint of every job.

`Params` mixes `PlanQueries` in, so `params.plan_runs("table1")` and `params.fingerprint(run, "train")`
read as questions to the params; Snakemake lays out its DAG from `plan_summary` (`pdd params plan
--json`) and DVC's stages come from the same plan (`pdd.config.dvc_pipeline`). Which keys a job reads
is `pdd.config.fingerprints`.
"""

from __future__ import annotations

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


class PlanQueries:
    """The plan's questions, answered from the validated fields of `pdd.config.schema.Params`."""

    def fingerprint(self, target: RunSpec | str, stage: Stage | str) -> Fingerprint:
        """The hash of what job (`target`, `stage`) reads and the dotted keys it covers (`pdd.config.fingerprints`).

        `target`: a RunSpec for train and evaluate (and prepare, for its dataset); `data/<dataset>` or
        `weights/<teacher>` for prepare; a table name, `replication_report`, `figures` or `explain` for tables.
        """
        return fingerprint_of(self, keys_of(self, target, stage))

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
            "weights": {name: {"file": getattr(self.teachers, name).file,
                               "fingerprint": self.fingerprint(f"weights/{name}", Stage.PREPARE)._asdict()}
                        for name in TEACHERS} if self.teachers.pretrained else {},
            "reports": {job: self.fingerprint(job, Stage.TABLES)._asdict() for job in report_jobs},
            "report_outputs": list(REPORT_OUTPUTS),
            "tables": {name: [run.id for run in self.plan_runs(name)] for name in tables},
            "runs": [{"id": run.id, **run._asdict(), "arch": self.variant(run.variant).arch,
                      "run_dir": str(self.run_dir(*run)),
                      "fingerprints": {stage.value: self.fingerprint(run, stage)._asdict()
                                       for stage in (Stage.TRAIN, Stage.EVALUATE)},
                      "tables": [name for name in tables if run in self.plan_runs(name)]} for run in runs],
        }
