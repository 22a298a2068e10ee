"""Read `results/**/metrics.json` into one tidy table and trace every reported number to one key of one file.

`ResultsIndex.frame` is the results table (pandas): one row per run × scoring × selection × scope (pooled or a
class) × metric, with the epoch, the metrics.json it came from and the `eval/epoch_XXX.json` holding that
epoch's per-image scores. Tables, figures and the replication report read it; `pdd results` prints it.
A number is looked up by run (dataset, variant, fidelity, seed) and by key path
(`metrics.<scoring>.<selection>.pooled|per_class.<cls>.<metric>`); a missing run, key or value is a
`DataError` that names the file and the key, never a blank cell.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from pdd.config import RunSpec
from pdd.engine.results import read_metrics
from pdd.engine.rundir import RunDir
from pdd.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

METRICS_FILE = "metrics.json"
# results/<dataset>/<variant>/<fidelity>/seed<k>/metrics.json; dvclive writes its own dvclive/metrics.json below
RUN_METRICS_GLOB = f"*/*/*/seed*/{METRICS_FILE}"


@dataclass(frozen=True)
class Run:
    key: RunSpec
    path: Path  # the metrics.json file
    data: dict[str, Any]

    @property
    def demo(self) -> bool:
        return bool(self.data["run"].get("demo", False))

    @property
    def provenance(self) -> dict[str, Any]:
        return self.data.get("provenance", {})

    def value(self, key: Sequence[str]) -> float:
        """The float at `key`; a missing key or a null value names this file and the key."""
        node: Any = self.data
        for depth, part in enumerate(key):
            if not isinstance(node, dict) or part not in node:
                present = sorted(node) if isinstance(node, dict) else type(node).__name__
                raise DataError(
                    f"{self.path}: key '{'.'.join(key)}' is missing ('{'.'.join(key[: depth + 1])}' not found; "
                    f"present: {present}). Re-run `pdd evaluate --run {self.path.parent}` or fix the table's "
                    "scoring/selection/metric."
                )
            node = node[part]
        if node is None:
            raise DataError(
                f"{self.path}: key '{'.'.join(key)}' is null (the metric is undefined for this run); "
                "this table needs it, so check the run's data (labels, classes) and re-evaluate."
            )
        return float(node)


SELECTIONS = ("last", "best_of_test")
POOLED = "pooled"
FRAME_COLUMNS = ("dataset", "variant", "fidelity", "seed", "scoring", "selection", "epoch", "scope", "metric",
                 "value", "demo", "metrics_file", "scores_file")


@dataclass(frozen=True)
class Source:
    """One number a table cell was computed from."""

    path: Path
    key: str
    value: float


@dataclass(frozen=True)
class Query:
    """What a measured number is: one arm (dataset, variant, fidelity, scoring, selection), a metric, the images
    (`classes`: () pooled, (c,) one class, several: the mean over those classes) and the seeds averaged."""

    dataset: str
    variant: str
    fidelity: str
    scoring: str
    selection: str
    metric: str
    classes: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Measured:
    """A reproduced number (fraction in [0, 1]) aggregated over seeds, with where it came from."""

    mean: float
    std: float | None  # sample std over seeds; None for a single seed
    n_seeds: int
    sources: tuple[Source, ...]
    demo: bool
    query: Query | None = None


def metric_key(scoring: str, selection: str, metric: str, cls: str | None = None) -> tuple[str, ...]:
    scope = ("per_class", cls) if cls is not None else ("pooled",)
    return ("metrics", scoring, selection, *scope, metric)


class ResultsIndex:
    """All runs found under a results root, addressable by `RunSpec`."""

    def __init__(self, root: Path, runs: Iterable[Run]):
        self.root = Path(root)
        self.runs: dict[RunSpec, Run] = {}
        for run in runs:
            if run.key in self.runs:
                raise DataError(
                    f"two metrics.json files describe the same run {run.key}: {self.runs[run.key].path} and "
                    f"{run.path}; remove the stale one"
                )
            self.runs[run.key] = run
        self._by_path = {run.path: run for run in self.runs.values()}

    @classmethod
    def scan(cls, root: str | Path) -> ResultsIndex:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"results directory {root} does not exist; train and evaluate runs first or pass --results")
        return cls(root, (load_run(path) for path in sorted(root.glob(RUN_METRICS_GLOB))))

    def run(self, key: RunSpec) -> Run:
        try:
            return self.runs[key]
        except KeyError:
            raise DataError(
                f"missing {self.root / key.relative_dir / METRICS_FILE} (dataset={key.dataset}, variant={key.variant}, "
                f"fidelity={key.fidelity}, seed={key.seed}): run `pdd train` and `pdd evaluate` for it "
                "(or the workflow) before rendering tables"
            ) from None

    def run_at(self, path: Path) -> Run:
        return self._by_path[path]

    @functools.cached_property
    def frame(self) -> pd.DataFrame:
        """The tidy results table (`FRAME_COLUMNS`), runs in path order; undefined metrics are NaN."""
        import pandas as pd

        records = []
        for run in sorted(self.runs.values(), key=lambda run: run.path):
            evaluations = RunDir(run.path.parent)
            for scoring, results in run.data["metrics"].items():
                for selection in SELECTIONS:
                    chosen = results[selection]
                    scores = evaluations.epoch_evaluation(chosen["epoch"])
                    scopes = [(POOLED, chosen["pooled"]), *chosen["per_class"].items()]
                    for scope, values in scopes:
                        for metric, value in values.items():
                            records.append((*run.key, scoring, selection, chosen["epoch"], scope, metric,
                                            float("nan") if value is None else float(value), run.demo,
                                            str(run.path), str(scores)))
        return pd.DataFrame.from_records(records, columns=list(FRAME_COLUMNS))

    @functools.cached_property
    def _values(self) -> dict[tuple, tuple[float, str]]:
        frame = self.frame
        keys = zip(frame.dataset, frame.variant, frame.fidelity, frame.seed, frame.scoring, frame.selection,
                   frame.scope, frame.metric)
        return dict(zip(keys, zip(frame.value, frame.metrics_file)))

    def measure(
        self,
        dataset: str,
        variant: str,
        fidelity: str,
        seeds: Sequence[int],
        key: tuple[str, ...],
        reduce_keys: Sequence[tuple[str, ...]] = (),
    ) -> Measured:
        """Mean ± std over `seeds` of the value at `key`.

        With `reduce_keys`, each seed's value is the mean over those keys instead (e.g. the
        Uni-Medical mean row, averaged over classes as the paper does), and `key` is unused.
        """
        keys = list(reduce_keys) or [key]
        per_seed, sources, demo = [], [], False
        for seed in seeds:
            run = self.run(RunSpec(dataset, variant, fidelity, seed))
            values = [self._value(run, k) for k in keys]
            sources.extend(Source(run.path, ".".join(k), v) for k, v in zip(keys, values))
            per_seed.append(statistics.fmean(values))
            demo = demo or run.demo
        if not per_seed:
            raise DataError(f"no seeds configured for {dataset}/{variant}/{fidelity}; set `seeds` in params")
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else None
        return Measured(statistics.fmean(per_seed), std, len(per_seed), tuple(sources), demo)


    def _value(self, run: Run, key: tuple[str, ...]) -> float:
        """The results table's value at a metrics.json key; a key it lacks or a NaN is explained by the file."""
        scope = key[4] if key[3] == "per_class" else POOLED
        found = self._values.get((*run.key, key[1], key[2], scope, key[-1])) if len(key) in (5, 6) else None
        if found is None or found[0] != found[0]:
            return run.value(key)  # raises the DataError that names the file and what is missing
        return found[0]


def load_run(path: Path) -> Run:
    """Read and schema-validate one metrics.json (the engine owns the schema)."""
    data = read_metrics(path)
    run = data["run"]
    return Run(RunSpec(run["dataset"], run["variant"], run["fidelity"], run["seed"]), path, data)
