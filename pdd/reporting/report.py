"""The replication report: does each of the paper's claims hold? (`replication_report.{md,tex}`, forest plot)

Built from the results table (`ResultsIndex.frame`: which epoch each selection took) and each run's per-image
scores (`eval/epoch_XXX.json`), never from a number typed in:

* **verdict per published cell**: ours (mean over seeds) with an interval carrying the test set and the seeds
  (`pdd.reporting.uncertainty`); *reproduced* when the paper's value lies inside it, *lower* / *higher*
  otherwise, with ours − paper and its interval; the fixed tolerance (`reporting.gap_tolerance`) beside it;
* **claims** (`claims.yaml`): paired tests between our runs on the same test images, or our interval against a
  published number, Holm-corrected per table (`pdd.reporting.claims`); among them PDD against the baselines pdd
  re-runs under its own protocol (RD4AD), with the margin the paper publishes beside ours;
* **the paper against itself** (`pdd.reporting.audit`);
* **selection optimism**: `best_of_test` − `last` AUROC per run, the best snapshot picked inside every
  resample, so that its interval carries the choice as well as the test set;
* **every run's numbers** with intervals, the operating points (sensitivity at 95 % specificity, specificity
  at 95 % sensitivity) included, and both `best_of_test` selection scorers side by side.
"""

from __future__ import annotations

import concurrent.futures
import csv
import functools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pdd.config import RunSpec
from pdd.engine.metrics import IMAGE_METRIC_NAMES
from pdd.engine.rundir import RunDir
from pdd.errors import DataError
from pdd.io import atomic_write_text
from pdd.reporting.audit import Finding, audit
from pdd.reporting.claims import (
    MEAN_CLASS,
    Claim,
    ClaimResult,
    MarginComparison,
    MissingArm,
    PaperArm,
    RunArm,
    judge_claims,
    margin_comparisons,
    paper_claims,
)
from pdd.reporting.figures import ForestRow, forest_figure, save_figure
from pdd.reporting.published import published
from pdd.reporting.resampling import AUROC
from pdd.reporting.results import Query, ResultsIndex, Run
from pdd.reporting.tables import METRIC_LABELS, TABLES, BuiltTable, ReportSettings, render
from pdd.reporting.uncertainty import (
    BestMinusLast,
    BootstrapResult,
    CurveMetric,
    Evidence,
    ImageBootstrap,
    Interval,
    LabelledImages,
    Mean,
    UncertaintySettings,
    combine_with_seeds,
    curves_needed,
    delong,
    normal_interval,
)

REPORT_STEM = "replication_report"
FOREST_STEM = "replication_report_forest"
SELECTION_STREAM = "selection"  # the optimism's resamples: a stream of their own, percentile intervals


@dataclass(frozen=True)
class Arm:
    """One reproduced quantity before the metric: a dataset's runs of one variant at one fidelity (all seeds),
    a scoring, the epoch a selection took, and the images (`classes`: () all, one class, or their mean)."""

    dataset: str
    variant: str
    fidelity: str
    scoring: str
    selection: str
    classes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        scope = f" [{'mean' if len(self.classes) > 1 else self.classes[0]}]" if self.classes else ""
        return f"{self.dataset}/{self.variant} {self.scoring} {self.selection}{scope}"

    @classmethod
    def of_query(cls, query: Query) -> Arm:
        classes = query.classes if len(query.classes) < 2 else tuple(sorted(query.classes))  # a mean: any order
        return cls(query.dataset, query.variant, query.fidelity, query.scoring, query.selection, classes)


@dataclass
class Estimate:
    """A quantity measured over seeds: the mean, each seed's value, its intervals and its bootstrap draws."""

    value: float
    per_seed: list[float]
    interval: Interval  # the one verdicts and claims use (test set and seeds)
    bootstrap: Interval  # bootstrap of the seed mean, widened by the seeds
    delong: Interval | None
    draws: np.ndarray
    seed_interval: list[tuple[Interval, Interval | None]] = field(default_factory=list)  # per seed: bootstrap, DeLong
    delong_variance: float | None = None  # of the seed mean, test set only

    @property
    def std(self) -> float | None:
        return float(np.std(self.per_seed, ddof=1)) if len(self.per_seed) > 1 else None

    @property
    def seed_sd(self) -> float:
        """The standard error the seeds add to the mean: s/√k."""
        return 0.0 if self.std is None else self.std / math.sqrt(len(self.per_seed))


@dataclass(frozen=True)
class CellResult:
    table: str
    row: str
    column: str
    metric: str
    paper: float  # percent
    arm: Arm
    estimate: Estimate
    tolerance: float  # fraction

    @property
    def ours(self) -> float:
        return 100 * self.estimate.value

    @property
    def delta(self) -> float:
        return self.ours - self.paper

    @property
    def delta_interval(self) -> tuple[float, float]:
        return 100 * self.estimate.interval.low - self.paper, 100 * self.estimate.interval.high - self.paper

    @property
    def verdict(self) -> str:
        low, high = self.delta_interval
        return "reproduced" if low <= 1e-9 and high >= -1e-9 else ("lower" if high < 0 else "higher")

    @property
    def other_interval(self) -> Interval | None:
        """For AUROC, the interval of the other method (bootstrap beside DeLong, or the reverse)."""
        if self.metric != AUROC:
            return None
        chosen = self.estimate.interval
        return self.estimate.bootstrap if chosen is self.estimate.delong else self.estimate.delong

    @property
    def within_tolerance(self) -> bool:
        return abs(self.delta) <= 100 * self.tolerance + 1e-9


@dataclass(frozen=True)
class OptimismRow:
    """best_of_test − last AUROC of one arm (over seeds) or of one run (`seed`)."""

    arm: Arm
    seed: int | None
    best_epoch: int | None
    last_epoch: int | None
    value: float
    interval: Interval


@dataclass(frozen=True)
class RunRow:
    """One run's metric at the reported selection, with its bootstrap (and, for AUROC, DeLong) interval."""

    arm: Arm
    seed: int
    epoch: int
    metric: str
    value: float
    bootstrap: Interval
    delong: Interval | None


@dataclass(frozen=True)
class SelectionRow:
    """One run and scoring: the epoch each selection scorer picks, and pdd's per-image AUROC there (%)."""

    run: str
    scoring: str
    per_image_epoch: int
    per_image_auroc: float | None
    official_epoch: int
    official_criterion: float | None  # the authors' first-image AUROC that selected it
    official_auroc: float | None  # pdd's per-image AUROC of that epoch

    @property
    def differ(self) -> bool:
        return self.per_image_epoch != self.official_epoch


@dataclass
class ReplicationReport:
    cells: list[CellResult]
    claims: list[ClaimResult]
    margins: list[MarginComparison]  # the paper's margin over a re-run baseline beside ours
    findings: list[Finding]
    optimism: list[OptimismRow]
    run_rows: list[RunRow]
    selections: list[SelectionRow]
    runs: list[Run]
    uncertainty: UncertaintySettings
    tables: list[str]

    @property
    def demo(self) -> bool:
        return any(run.demo for run in self.runs)


# ---- per-image scores ----------------------------------------------------------------------------------------


class ScoreStore:
    """Per-image scores of every run's scored epochs, on one test set per dataset (checked to be the same)."""

    def __init__(self) -> None:
        self.test_sets: dict[str, LabelledImages] = {}

    @functools.lru_cache(maxsize=None)
    def _epoch(self, run_dir: Path, epoch: int) -> dict[str, Any]:
        path = RunDir(run_dir).epoch_evaluation(epoch)
        try:
            images = json.loads(path.read_text(encoding="utf-8")).get("images")
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {path} ({exc}); re-run `pdd evaluate --run {run_dir}`") from exc
        if images is None:
            raise DataError(f"{path} has no per-image scores (written by an earlier pdd); re-run "
                            f"`pdd evaluate --run {run_dir}` to score the snapshots again")
        return images

    def _classes(self, run: Run, scoring: str, paths: Sequence[str]) -> np.ndarray:
        """Each image's class, from the run's scores_<scoring>.csv (the dataset's name where it has none)."""
        table = RunDir(run.path.parent).scores(scoring)
        if not table.is_file():
            return np.array([run.key.dataset] * len(paths))
        with open(table, newline="", encoding="utf-8") as handle:
            by_path = {row["path"]: row["class"] for row in csv.DictReader(handle)}
        return np.array([by_path.get(path, run.key.dataset) for path in paths])

    def scores(self, run: Run, scoring: str, epoch: int) -> np.ndarray:
        """The scores of `run`'s snapshot `epoch` under `scoring`, in the dataset's test-set order."""
        images = self._epoch(run.path.parent, epoch)
        if scoring not in images["scores"]:
            raise DataError(f"{RunDir(run.path.parent).epoch_evaluation(epoch)} has no {scoring} scores; "
                            f"re-run `pdd evaluate --run {run.path.parent}`")
        dataset = run.key.dataset
        labels = np.asarray(images["labels"])
        if dataset not in self.test_sets:
            self.test_sets[dataset] = LabelledImages(dataset, tuple(images["paths"]), labels,
                                              self._classes(run, scoring, images["paths"]))
        test_set = self.test_sets[dataset]
        if tuple(images["paths"]) != test_set.paths or not np.array_equal(labels, test_set.labels):
            raise DataError(f"{run.path.parent} was scored on other test images than the other {dataset} runs "
                            "(a changed split?); paired comparisons need one test set: re-prepare the dataset with "
                            "its seed and re-run the runs that differ")
        return np.asarray(images["scores"][scoring], dtype=np.float64)

    def scored_epochs(self, run: Run) -> list[int]:
        """The epochs `best_of_test` chose from (provenance.snapshots_scored; the eval/ files where absent)."""
        recorded = run.provenance.get("snapshots_scored")
        if recorded:
            return sorted(recorded)
        folder = RunDir(run.path.parent).evaluations
        return sorted(int(path.stem.split("_")[1]) for path in folder.glob("epoch_*.json"))


# ---- building --------------------------------------------------------------------------------------------------


def _curve(run: Run, scoring: str, epoch: int, cls: str | None) -> tuple:
    return (run.key.id, scoring, epoch, cls)


class _DatasetMeasurement:
    """Every quantity on one dataset's test set: its bootstrap jobs (run by workers) and DeLong."""

    def __init__(self, dataset: str, index: ResultsIndex, store: ScoreStore, settings: ReportSettings,
                 uncertainty: UncertaintySettings):
        self.dataset, self.index, self.store = dataset, index, store
        self.settings, self.uncertainty = settings, uncertainty
        self.requests: dict[tuple[Arm, str], None] = {}
        self.optimism_arms: dict[Arm, None] = {}
        self.curve_scores: dict[tuple, tuple[np.ndarray, str | None]] = {}

    def runs(self, arm: Arm) -> list[Run]:
        try:
            return [self.index.run(RunSpec(arm.dataset, arm.variant, arm.fidelity, seed))
                    for seed in self.settings.seeds]
        except DataError as missing:
            raise MissingArm(str(missing)) from None

    def _add_curve(self, run: Run, scoring: str, epoch: int, cls: str | None) -> tuple:
        key = _curve(run, scoring, epoch, cls)
        if key not in self.curve_scores:
            self.curve_scores[key] = (self.store.scores(run, scoring, epoch), cls)
        return key

    def epoch(self, run: Run, arm: Arm) -> int:
        try:
            return int(run.data["metrics"][arm.scoring][arm.selection]["epoch"])
        except KeyError:
            raise MissingArm(f"{run.path} has no {arm.scoring}/{arm.selection} results") from None

    def _seed_quantity(self, run: Run, arm: Arm, metric: str) -> Any:
        epoch = self.epoch(run, arm)
        if not arm.classes:
            return CurveMetric(self._add_curve(run, arm.scoring, epoch, None), metric)
        parts = tuple(CurveMetric(self._add_curve(run, arm.scoring, epoch, cls), metric) for cls in arm.classes)
        return parts[0] if len(parts) == 1 else Mean(parts)

    def prepare(self) -> list[BootstrapJob]:
        """The quantities of every request and optimism arm, and the curves they read, as jobs for the workers:
        the requests in one (BCa by default), the optimism of each arm in its own (percentile, on a stream of
        its own: the costliest part, 10 snapshots per run, split so that the workers share it)."""
        self.quantities: dict[tuple[Arm, str], tuple[Any, list[Any]]] = {}
        for arm, metric in self.requests:
            per_seed = [self._seed_quantity(run, arm, metric) for run in self.runs(arm)]
            self.quantities[(arm, metric)] = (Mean(tuple(per_seed)), per_seed)
        self.optimism: dict[Arm, tuple[Any, list[Any], list[Run]]] = {}
        for arm in self.optimism_arms:
            per_seed, runs = [], self.runs(arm)
            for run in runs:
                epochs = tuple(self._add_curve(run, arm.scoring, epoch, None)
                               for epoch in self.store.scored_epochs(run))
                last = self._add_curve(run, arm.scoring, int(run.data["metrics"][arm.scoring]["last"]["epoch"]), None)
                per_seed.append(BestMinusLast(epochs, last))
            self.optimism[arm] = (Mean(tuple(per_seed)), per_seed, runs)
        requests = [q for mean, per_seed in self.quantities.values() for q in (mean, *per_seed)]
        self.jobs = [(False, self._job(requests, None, ""))] if requests else []
        self.jobs += [(True, self._job([mean, *per_seed], "percentile", SELECTION_STREAM))
                      for mean, per_seed, _ in self.optimism.values()]
        return [job for _, job in self.jobs]

    def _job(self, quantities: list[Any], method: str | None, stream: str) -> BootstrapJob:
        """A bootstrap call on this test set over the curves `quantities` read. Calls of one stream draw the same
        resamples (scipy's draws do not depend on the statistic), so however the quantities are split into jobs,
        their draws stay paired image by image."""
        quantities = list(dict.fromkeys(quantities))
        curves = {curve: self.curve_scores[curve] for curve in curves_needed(quantities)}
        return BootstrapJob(self.store.test_sets[self.dataset], curves, self.uncertainty, quantities, method, stream)

    def finish(self, results: list[BootstrapResult | None]) -> None:
        """Take the jobs' bootstrap results; DeLong (cheap) runs here."""
        self.results, self.optimism_results = {}, {}
        for (optimism, job), result in zip(self.jobs, results):
            (self.optimism_results if optimism else self.results).update(zip(job.quantities, _unpack(result)))
        self._delong()

    def _delong(self) -> None:
        """DeLong covariance of every AUROC curve, per scope (disjoint scopes are independent)."""
        test_set = self.store.test_sets[self.dataset]
        by_scope: dict[str | None, list[tuple]] = defaultdict(list)
        for (arm, metric), (mean, per_seed) in self.quantities.items():
            if metric == AUROC:
                for quantity in per_seed:
                    for curve in _weights(quantity):
                        if curve not in by_scope[curve[3]]:
                            by_scope[curve[3]].append(curve)
        self.covariance: dict[tuple[tuple, tuple], float] = {}
        for scope, curves in by_scope.items():
            columns = test_set.columns(scope)
            scores = np.stack([self.curve_scores[curve][0][columns] for curve in curves])
            _, covariance = delong(test_set.labels[columns], scores)
            for i, a in enumerate(curves):
                for j, b in enumerate(curves):
                    self.covariance[(a, b)] = float(covariance[i, j])

    def delong_variance(self, weights: dict[tuple, float]) -> float:
        return sum(wa * wb * self.covariance.get((a, b), 0.0)
                   for a, wa in weights.items() for b, wb in weights.items())

    def estimate(self, arm: Arm, metric: str) -> Estimate:
        mean, per_seed = self.quantities[(arm, metric)]
        value, boot, draws = self.results[mean]
        seeds = [self.results[q][0] for q in per_seed]
        u = self.uncertainty
        bootstrap = combine_with_seeds(value, boot, seeds, u)
        delong_interval, variance, seed_intervals = None, None, []
        for quantity in per_seed:
            seed_delong = None
            if metric == AUROC:
                seed_delong = normal_interval(self.results[quantity][0], self.delong_variance(_weights(quantity)), u,
                                              u.delong_scale, f"DeLong ({u.delong_scale})")
            seed_intervals.append((self.results[quantity][1], seed_delong))
        if metric == AUROC:
            variance = self.delong_variance(_weights(mean))
            seed_part = float(np.var(seeds, ddof=1)) / len(seeds) if len(seeds) > 1 else 0.0
            method = f"DeLong ({u.delong_scale})" + (" + seeds" if len(seeds) > 1 else "")
            delong_interval = normal_interval(value, variance + seed_part, u, u.delong_scale, method)
        chosen = delong_interval if metric == AUROC and u.auroc_interval == "delong" else bootstrap
        return Estimate(value, seeds, chosen, bootstrap, delong_interval, draws, seed_intervals, variance)


@dataclass
class BootstrapJob:
    """One bootstrap call on one test set, self-contained so that a worker process can run it."""

    images: LabelledImages
    curves: dict[tuple, tuple[np.ndarray, str | None]]
    uncertainty: UncertaintySettings
    quantities: list[Any]
    method: str | None  # None: the settings' (`reporting.uncertainty.bootstrap`)
    stream: str

    @property
    def cost(self) -> int:
        """Images × curve-metrics to compute: how long the job runs, roughly (every metric beyond AUROC is one
        more pass over the images)."""
        needed = curves_needed(self.quantities)
        return sum(self.images.columns(self.curves[curve][1]).size * len(metrics) for curve, metrics in needed.items())

    def run(self) -> BootstrapResult | None:
        if not self.quantities:
            return None
        bootstrap = ImageBootstrap(self.images, self.uncertainty)
        for key, (scores, cls) in self.curves.items():
            bootstrap.add_curve(key, scores, cls)
        return bootstrap.run(self.quantities, method=self.method, stream=self.stream)  # type: ignore[arg-type]


def run_jobs(jobs: list[BootstrapJob], workers: int) -> list[BootstrapResult | None]:
    """Every job's result, in `workers` processes (the costliest first) when more than one is asked for."""
    if workers <= 1 or len(jobs) <= 1:
        return [job.run() for job in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost)
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = {i: pool.submit(BootstrapJob.run, jobs[i]) for i in order}
        return [futures[i].result() for i in range(len(jobs))]


def _unpack(result: BootstrapResult | None) -> list[tuple[float, Interval, np.ndarray]]:
    if result is None:
        return []
    return [(float(result.estimates[q]), result.intervals[q], result.draws[q]) for q in range(len(result.intervals))]


def _weights(quantity: Any) -> dict[tuple, float]:
    """A linear quantity as {curve: weight} (DeLong's covariance applies to linear combinations of AUROCs)."""
    if isinstance(quantity, CurveMetric):
        return {quantity.curve: 1.0}
    weights: dict[tuple, float] = defaultdict(float)
    for part in quantity.parts:
        for curve, weight in _weights(part).items():
            weights[curve] += weight / len(quantity.parts)
    return dict(weights)


class ReportBuilder:
    """Collects what the report measures (the paper cells' arms, the claims' arms, every table run's
    optimism), measures it per test set, and assembles the verdicts."""

    def __init__(self, index: ResultsIndex, settings: ReportSettings, uncertainty: UncertaintySettings,
                 workers: int = 1):
        self.index, self.settings, self.uncertainty, self.workers = index, settings, uncertainty, workers
        self.store = ScoreStore()
        self.datasets: dict[str, _DatasetMeasurement] = {}

    def _dataset(self, name: str) -> _DatasetMeasurement:
        if name not in self.datasets:
            self.datasets[name] = _DatasetMeasurement(name, self.index, self.store, self.settings, self.uncertainty)
        return self.datasets[name]

    def arm_of(self, arm: RunArm) -> Arm:
        classes: tuple[str, ...] = ()
        if arm.cls == MEAN_CLASS:
            runs = self._dataset(arm.dataset).runs(Arm(arm.dataset, arm.variant, arm.fidelity or
                                                       self.settings.fidelity, arm.scoring, "last"))
            classes = tuple(sorted(runs[0].data["metrics"][arm.scoring]["last"]["per_class"]))
        elif arm.cls:
            classes = (arm.cls,)
        return Arm(arm.dataset, arm.variant, arm.fidelity or self.settings.fidelity, arm.scoring,
                   arm.selection or self.settings.selection, classes)

    def build(self, tables: Sequence[BuiltTable], claims: Sequence[Claim]) -> ReplicationReport:
        tables = [table for table in tables if table.name in TABLES]
        cells = [(table.name, cell) for table in tables for cell in table.cells
                 if cell.paper is not None and cell.measured.query is not None]
        for _, cell in cells:  # every metric of a reported arm: the operating points come with AUROC/AP/F1
            arm = Arm.of_query(cell.measured.query)
            for metric in IMAGE_METRIC_NAMES:
                self._dataset(arm.dataset).requests[(arm, metric)] = None
        claim_arms: dict[int, tuple[Arm, Arm | None]] = {}
        for number, claim in enumerate(claims):
            try:
                a = self._available(self.arm_of(claim.a))
                b = self._available(self.arm_of(claim.b)) if isinstance(claim.b, RunArm) else None
            except MissingArm:
                continue
            claim_arms[number] = (a, b)
            for arm in (a, b):
                if arm is not None:
                    self._dataset(arm.dataset).requests[(arm, claim.metric)] = None
        runs = {run.path: run for table in tables for run in table.runs}
        for run in runs.values():
            for scoring in run.data["metrics"]:
                arm = Arm(run.key.dataset, run.key.variant, run.key.fidelity, scoring, "best_of_test")
                self._dataset(arm.dataset).optimism_arms[arm] = None
        # a dataset only asked about by claims whose runs are missing has nothing to measure
        measurements = [m for m in self.datasets.values() if m.requests or m.optimism_arms]
        jobs = [m.prepare() for m in measurements]
        results = iter(run_jobs([job for pair in jobs for job in pair], self.workers))
        for measurement, pair in zip(measurements, jobs):
            measurement.finish([next(results) for _ in pair])
        self.measured = measurements

        cell_results = [CellResult(table, cell.row, cell.column, cell.metric, cell.paper,
                                   Arm.of_query(cell.measured.query),
                                   self._checked(Arm.of_query(cell.measured.query), cell.metric, cell.measured.mean),
                                   self.settings.gap_tolerance) for table, cell in cells]
        claim_results = judge_claims(list(claims), functools.partial(self._evidence, claim_arms, list(claims)),
                                     self.uncertainty.level)
        ordered_runs = sorted(runs.values(), key=lambda run: run.path)
        return ReplicationReport(cell_results, claim_results, margin_comparisons(claim_results), audit(),
                                 self._optimism(), self._run_rows(),
                                 selection_rows(ordered_runs), ordered_runs, self.uncertainty,
                                 [table.name for table in tables])

    def _available(self, arm: Arm) -> Arm:
        """`arm` if every seed's run has its scoring and selection, else MissingArm."""
        measurement = self._dataset(arm.dataset)
        for run in measurement.runs(arm):
            measurement.epoch(run, arm)
        return arm

    def _checked(self, arm: Arm, metric: str, recorded: float) -> Estimate:
        """The estimate from per-image scores, which must reproduce metrics.json's number (the tables')."""
        estimate = self.datasets[arm.dataset].estimate(arm, metric)
        if abs(estimate.value - recorded) > 1e-6:
            raise DataError(f"{arm.label}: {metric} from the per-image scores (eval/epoch_XXX.json) is "
                            f"{estimate.value:.6f}, metrics.json says {recorded:.6f}; re-run `pdd evaluate` for "
                            "its runs")
        return estimate

    def _evidence(self, claim_arms: dict[int, tuple[Arm, Arm | None]], claims: list[Claim], claim: Claim) -> Evidence:
        number = next(i for i, candidate in enumerate(claims) if candidate is claim)
        if number not in claim_arms:
            arm = claim.a if not isinstance(claim.b, RunArm) else claim.b
            raise MissingArm(f"no results for {claim.a.label} or {getattr(arm, 'label', arm)}")
        a_arm, b_arm = claim_arms[number]
        a = self.datasets[a_arm.dataset].estimate(a_arm, claim.metric)
        use_delong = claim.metric == AUROC and self.uncertainty.auroc_interval == "delong"
        if b_arm is None:
            assert isinstance(claim.b, PaperArm)
            constant = published(claim.b.table, claim.b.row, claim.b.column, claim.metric) / 100
            if use_delong:
                return Evidence(a.value - constant, se=math.sqrt(max(a.delong_variance or 0.0, 0.0)),
                                seed_sd=a.seed_sd, method=f"DeLong ({self.uncertainty.delong_scale}) vs constant",
                                scale=self.uncertainty.delong_scale, shift=constant)
            return Evidence(a.value - constant, draws=a.draws - constant, seed_sd=a.seed_sd,
                            method="bootstrap vs constant")
        b = self.datasets[b_arm.dataset].estimate(b_arm, claim.metric)
        seed_sd = math.hypot(a.seed_sd, b.seed_sd)
        paired = a_arm.dataset == b_arm.dataset
        if use_delong:
            measurement = self.datasets[a_arm.dataset]
            weights = dict(_weights(measurement.quantities[(a_arm, claim.metric)][0]))
            if paired:
                for curve, weight in _weights(measurement.quantities[(b_arm, claim.metric)][0]).items():
                    weights[curve] = weights.get(curve, 0.0) - weight
                variance = measurement.delong_variance(weights)
            else:
                variance = (a.delong_variance or 0.0) + (b.delong_variance or 0.0)
            return Evidence(a.value - b.value, se=math.sqrt(max(variance, 0.0)), seed_sd=seed_sd,
                            method="DeLong paired" if paired else "DeLong, independent test sets")
        return Evidence(a.value - b.value, draws=a.draws - b.draws, seed_sd=seed_sd,
                        method="paired bootstrap" if paired else "bootstrap, independent test sets")

    def _optimism(self) -> list[OptimismRow]:
        rows = []
        for measurement in self.measured:
            for arm, (mean, per_seed, runs) in measurement.optimism.items():
                value, interval, _ = measurement.optimism_results[mean]
                seeds = [measurement.optimism_results[q][0] for q in per_seed]
                rows.append(OptimismRow(arm, None, None, None, value,
                                        combine_with_seeds(value, interval, seeds, self.uncertainty, (-1.0, 1.0))))
                for run, quantity in zip(runs, per_seed):
                    value, interval, _ = measurement.optimism_results[quantity]
                    results = run.data["metrics"][arm.scoring]
                    rows.append(OptimismRow(arm, run.key.seed, results["best_of_test"]["epoch"],
                                            results["last"]["epoch"], value, interval))
        return rows

    def _run_rows(self) -> list[RunRow]:
        rows = []
        for measurement in self.measured:
            for arm, metric in measurement.requests:
                estimate = measurement.estimate(arm, metric)
                for run, value, (boot, delong_interval) in zip(measurement.runs(arm), estimate.per_seed,
                                                                estimate.seed_interval):
                    rows.append(RunRow(arm, run.key.seed, run.data["metrics"][arm.scoring][arm.selection]["epoch"],
                                       metric, value, boot, delong_interval))
        return sorted(rows, key=lambda row: (row.arm.label, row.seed, IMAGE_METRIC_NAMES.index(row.metric)))


def selection_rows(runs: Sequence[Run]) -> list[SelectionRow]:
    """Both `best_of_test` selections of every run whose metrics.json records them (`best_of_test_by`)."""

    def percent(value: float | None) -> float | None:
        return None if value is None else 100.0 * value

    rows = []
    for run in runs:
        for scoring, results in sorted(run.data["metrics"].items()):
            by = results.get("best_of_test_by")
            if not by:
                continue
            ours, official = by["per_image"], by["official_first_image"]
            rows.append(SelectionRow(
                run.key.id, scoring, ours["epoch"], percent(ours["pooled"]["image_AUROC"]), official["epoch"],
                percent(official["selection_AUROC"]), percent(official["pooled"]["image_AUROC"])))
    return rows


def build_report(index: ResultsIndex, settings: ReportSettings, uncertainty: UncertaintySettings,
                 tables: Sequence[BuiltTable], claims: Sequence[Claim] | None = None,
                 workers: int = 1) -> ReplicationReport:
    """The report of the paper tables among `tables` (results tables of the user's own have no paper values);
    the resampling jobs run in `workers` processes."""
    builder = ReportBuilder(index, settings, uncertainty, workers)
    return builder.build(tables, paper_claims() if claims is None else claims)


# ---- rendering ---------------------------------------------------------------------------------------------


def _percent(interval: Interval | None) -> str:
    return "–" if interval is None else f"[{100 * interval.low:.2f}, {100 * interval.high:.2f}]"


def _context(report: ReplicationReport, settings: ReportSettings) -> dict[str, Any]:
    verdicts = [cell.verdict for cell in report.cells]
    claim_verdicts = [result.verdict for result in report.claims]
    families = list(dict.fromkeys(result.claim.family for result in report.claims))
    return dict(
        report=report, u=report.uncertainty, level_pct=f"{100 * report.uncertainty.level:g}",
        tolerance_pp=100 * settings.gap_tolerance, percent=_percent, metric_label=METRIC_LABELS,
        counts={verdict: verdicts.count(verdict) for verdict in ("reproduced", "lower", "higher")},
        claim_counts={verdict: claim_verdicts.count(verdict)
                      for verdict in ("supported", "not significant", "contradicted", "not run")},
        families=families, n_within=sum(cell.within_tolerance for cell in report.cells),
        inconsistent=[finding for finding in report.findings if not finding.consistent],
        consistent=[finding for finding in report.findings if finding.consistent],
        forest=f"{FOREST_STEM}.png", tables=report.tables,
        selections=report.selections,
    )


def forest_rows(report: ReplicationReport) -> list[ForestRow]:
    """One row per cell, labelled by table, row, column and metric; the column only where a table has several
    (Tables 1-2: PDD and the RD4AD re-run; Tables 3-5's only column is PDD, their rows name the variant)."""
    columns = {table: {cell.column for cell in report.cells if cell.table == table}
               for table in {cell.table for cell in report.cells}}
    rows = []
    for cell in report.cells:
        low, high = cell.delta_interval
        column = cell.column if len(columns[cell.table]) > 1 else ""
        label = f"T{cell.table.removeprefix('table')} {cell.row} {column} {METRIC_LABELS[cell.metric]}"
        rows.append(ForestRow(" ".join(label.split()), cell.delta, low, high, cell.verdict))
    return rows


def render_report(report: ReplicationReport, results_root: Path, settings: ReportSettings, out: Path) -> list[Path]:
    """Write replication_report.{md,tex} and the forest plot (PNG, PDF) into `out`; returns the paths."""
    context = _context(report, settings)
    written = []
    for ext in ("md", "tex"):
        path = out / f"{REPORT_STEM}.{ext}"
        atomic_write_text(path, render(f"{REPORT_STEM}.{ext}.j2", None, results_root, settings, runs=report.runs,
                                       **context))
        written.append(path)
    title = "ours − paper per published cell"
    written += save_figure(forest_figure(forest_rows(report), title, report.uncertainty.level), out / FOREST_STEM,
                           report.demo)
    return written
