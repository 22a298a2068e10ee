"""How uncertain each reproduced number is: stratified bootstrap, DeLong, seeds, paired tests and Holm.

* **Bootstrap** (`ImageBootstrap`): `scipy.stats.bootstrap` over the test images, each stratum (label, and
  class for multi-class sets) resampled separately, so every resample keeps the test set's class counts. One
  call per test set bootstraps every quantity on it (each run, scoring, epoch and metric; seed means; class
  means) from the same resamples, so two arms' draws are paired image by image. The statistic turns scipy's
  resampled image positions into counts and computes every metric of every score vector at once
  (`pdd.reporting.resampling`). Intervals are scipy's (`reporting.uncertainty.bootstrap`, BCa by default);
  where BCa is undefined (a degenerate distribution, e.g. AUROC 1 in every resample) the percentile interval
  of the same draws is used and the interval says so.
* **DeLong** (`delong`): AUROCs and their covariance from the structural components (DeLong et al. 1988),
  computed from mid-ranks (Sun & Xu 2014): O(n log n) per score vector. The interval is taken on the logit
  scale by default (`reporting.uncertainty.delong_scale`): near AUROC 1 the identity scale's symmetric interval
  under-covers and crosses 1 (docs/reporting.md has the measured coverage).
* **Seeds**: the mean over seeds is bootstrapped as one quantity (the same resample for every seed), which
  carries the test-set variation of the mean; the seeds' own spread adds in quadrature, `z * s / sqrt(k)`
  (`combine_with_seeds`).
* **Claims** compare two quantities through `Evidence` (its CDF at a threshold gives one-sided p-values) and
  are Holm-corrected within a family (`holm`).
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Hashable, Literal, Sequence

import numpy as np
from scipy import optimize, stats

from pdd.reporting.resampling import AUROC, SortedCurves, counts_of, curve_metrics

BootstrapMethod = Literal["BCa", "percentile", "basic"]
# elements (resamples × images) of the counts of one statistic call (large: the pair products' GEMMs), and of
# the arrays that the cumulative-sum path works on inside it, (resamples × images) and (resamples × curves ×
# images): small enough for the CPU's caches, large enough to vectorise (benchmarks/bench_report.py)
BATCH_ELEMENTS = 2**22
ROW_ELEMENTS = 2**18
STACK_ELEMENTS = 2**21


@dataclass(frozen=True)
class UncertaintySettings:
    """`reporting.uncertainty.*`: recorded in the report beside every interval."""

    level: float = 0.95
    resamples: int = 10_000
    seed: int = 0
    bootstrap: BootstrapMethod = "BCa"
    auroc_interval: Literal["delong", "bootstrap"] = "delong"
    delong_scale: Literal["logit", "identity"] = "logit"

    @property
    def z(self) -> float:
        return float(stats.norm.ppf(0.5 + self.level / 2))

    @property
    def alpha(self) -> float:
        return 1.0 - self.level

    @classmethod
    def from_params(cls, params: Any) -> UncertaintySettings:
        return cls(**params.reporting.uncertainty.model_dump())


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str

    def contains(self, value: float) -> bool:
        return self.low - 1e-12 <= value <= self.high + 1e-12

    def shifted(self, by: float) -> Interval:
        return Interval(self.low + by, self.high + by, self.method)


# ---- quantities a bootstrap computes -----------------------------------------------------------------------


@dataclass(frozen=True)
class CurveMetric:
    """One metric of one score vector (a run's scoring at an epoch, over all images or one class)."""

    curve: Hashable
    metric: str


@dataclass(frozen=True)
class Mean:
    """The mean of other quantities (over seeds, or over classes as the paper's Table 2 mean row)."""

    parts: tuple[Any, ...]


@dataclass(frozen=True)
class BestMinusLast:
    """AUROC of the best of `epochs` minus that of `last`, the best picked inside each resample (earliest on
    ties, as `pdd.engine.selection.best_epoch`): the selection optimism, with the choice resampled too."""

    epochs: tuple[Hashable, ...]
    last: Hashable


def curves_needed(quantities: Sequence[Any]) -> dict[Hashable, set[str]]:
    """The curves `quantities` read and the metrics of each."""
    needed: dict[Hashable, set[str]] = {}
    for quantity in quantities:
        _needed(quantity, needed)
    return needed


def _needed(quantity: Any, into: dict[Hashable, set[str]]) -> None:
    if isinstance(quantity, CurveMetric):
        into.setdefault(quantity.curve, set()).add(quantity.metric)
    elif isinstance(quantity, Mean):
        for part in quantity.parts:
            _needed(part, into)
    else:
        for curve in (*quantity.epochs, quantity.last):
            into.setdefault(curve, set()).add(AUROC)


def _evaluate(quantity: Any, values: dict[tuple[Hashable, str], np.ndarray]) -> np.ndarray:
    if isinstance(quantity, CurveMetric):
        return values[(quantity.curve, quantity.metric)]
    if isinstance(quantity, Mean):
        return np.mean([_evaluate(part, values) for part in quantity.parts], axis=0)
    epochs = np.stack([values[(curve, AUROC)] for curve in quantity.epochs])
    return epochs.max(axis=0) - values[(quantity.last, AUROC)]


@dataclass(frozen=True)
class LabelledImages:
    """The labelled images every run on one dataset scores, in split order."""

    name: str
    paths: tuple[str, ...]
    labels: np.ndarray
    classes: np.ndarray

    @property
    def strata(self) -> list[np.ndarray]:
        """Image positions of each (class, label) group: the groups resampled separately."""
        keys = sorted(set(zip(self.classes.tolist(), self.labels.tolist())))
        return [np.flatnonzero((self.classes == cls) & (self.labels == label)) for cls, label in keys]

    def columns(self, cls: str | None) -> np.ndarray:
        return np.arange(self.labels.size) if cls is None else np.flatnonzero(self.classes == cls)


@dataclass
class BootstrapResult:
    estimates: np.ndarray  # (Q,) on the test set itself
    intervals: list[Interval]
    draws: np.ndarray  # (Q, resamples), the same resamples for every quantity


class _Statistic:
    """scipy's vectorised statistic: resampled image positions of every stratum -> every quantity.

    The curves a quantity needs are stacked by the images they cover (all, or one class) and the metrics read
    from them, so that one numpy call computes a metric for many curves at once."""

    def __init__(self, bootstrap: ImageBootstrap, quantities: Sequence[Any]):
        self.n_images, self.quantities = bootstrap.test_set.labels.size, list(quantities)
        needed = curves_needed(self.quantities)
        groups: dict[tuple[str | None, tuple[str, ...]], list[Hashable]] = {}
        for curve, metrics in needed.items():
            groups.setdefault((bootstrap.scopes[curve], tuple(sorted(metrics))), []).append(curve)
        self.stacks = [(keys, metrics, bootstrap.stack(keys)) for (_, metrics), keys in groups.items()]

    def __call__(self, *indices: np.ndarray, axis: int = -1) -> np.ndarray:
        lead = np.broadcast_shapes(*(index.shape[:-1] for index in indices))
        flat = [np.broadcast_to(index, (*lead, index.shape[-1])).reshape(-1, index.shape[-1]).astype(np.int64)
                for index in indices]
        counts = counts_of(flat, self.n_images)
        values: dict[tuple[Hashable, str], np.ndarray] = {}
        for keys, metrics, curves in self.stacks:
            if metrics == (AUROC,) and curves.auroc_by_product:
                computed = curve_metrics(curves, counts, metrics)
            else:
                computed = self._in_blocks(curves, counts, metrics)
            for offset, key in enumerate(keys):
                for metric in metrics:
                    values[(key, metric)] = computed[metric][offset]
        result = np.stack([_evaluate(quantity, values) for quantity in self.quantities])
        return result.reshape(len(self.quantities), *lead)


    @staticmethod
    def _in_blocks(curves: SortedCurves, counts: np.ndarray, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
        """`curve_metrics` over blocks of resamples and curves that fit the CPU's caches."""
        images = curves.normal_columns.size + curves.anomalous_columns.size
        rows = max(1, ROW_ELEMENTS // images)
        step = max(1, STACK_ELEMENTS // (rows * images))
        out = {metric: np.empty((len(curves), counts.shape[0])) for metric in metrics}
        for row in range(0, counts.shape[0], rows):
            for start in range(0, len(curves), step):
                block = curve_metrics(curves.rows(start, start + step), counts[row:row + rows], metrics)
                for metric in metrics:
                    out[metric][start:start + step, row:row + rows] = block[metric]
        return out


class ImageBootstrap:
    """Every score vector on one test set, bootstrapped together from the same resamples."""

    def __init__(self, test_set: LabelledImages, settings: UncertaintySettings):
        self.test_set, self.settings = test_set, settings
        self.scores: dict[Hashable, np.ndarray] = {}
        self.scopes: dict[Hashable, str | None] = {}

    def add_curve(self, key: Hashable, scores: np.ndarray, cls: str | None = None) -> None:
        """Scores of every test image (split order); `cls` restricts the curve to one class's images."""
        self.scores[key] = np.asarray(scores, dtype=np.float64)
        self.scopes[key] = cls

    def stack(self, keys: Sequence[Hashable]) -> SortedCurves:
        """The curves `keys` (all over the same images) sorted for resampling."""
        columns = self.test_set.columns(self.scopes[keys[0]])
        scores = np.stack([self.scores[key][columns] for key in keys])
        return SortedCurves.of(scores, self.test_set.labels[columns], columns)

    def run(self, quantities: Sequence[Any], method: BootstrapMethod | None = None,
            stream: str = "") -> BootstrapResult:
        """Intervals of `quantities` (`method`, default `settings.bootstrap`) from `settings.resamples` stratified
        resamples; `stream` names an independent, reproducible random stream of this test set."""
        method = method or self.settings.bootstrap
        statistic = _Statistic(self, quantities)
        strata = [np.asarray(stratum, dtype=np.float64) for stratum in self.test_set.strata]
        estimates = statistic(*strata)
        rng = np.random.default_rng([self.settings.seed, zlib.crc32(f"{self.test_set.name}/{stream}".encode())])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate BCa: handled below, per quantity
            result = stats.bootstrap(
                strata, statistic, n_resamples=self.settings.resamples, vectorized=True, paired=False,
                confidence_level=self.settings.level, method=method, rng=rng,
                batch=max(1, BATCH_ELEMENTS // self.test_set.labels.size))
        draws = np.atleast_2d(result.bootstrap_distribution)
        low = np.atleast_1d(result.confidence_interval.low)
        high = np.atleast_1d(result.confidence_interval.high)
        intervals = []
        for q in range(len(quantities)):
            if np.isfinite(low[q]) and np.isfinite(high[q]):
                intervals.append(Interval(float(low[q]), float(high[q]), f"{method} bootstrap"))
            else:  # BCa undefined: the percentile interval of the same draws
                tail = (1 - self.settings.level) / 2
                lo, hi = np.quantile(draws[q], [tail, 1 - tail])
                intervals.append(Interval(float(lo), float(hi), "percentile bootstrap (BCa undefined)"))
        return BootstrapResult(np.atleast_1d(estimates), intervals, draws)


# ---- DeLong ------------------------------------------------------------------------------------------------


def delong(labels: np.ndarray, scores: np.ndarray, covariance: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC (K,), covariance (K, K)) of K score vectors (K, n) on the same images, by DeLong's method;
    with `covariance=False` each vector's variance (K,) only (K independent simulations, say).

    Mid-ranks within the anomalous images, within the normal ones and over all give each image's placement
    (Sun & Xu 2014); the covariance is that of the placements over images, per class."""
    labels = np.asarray(labels)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    anomalous, normal = scores[:, labels == 1], scores[:, labels == 0]
    m, n = anomalous.shape[1], normal.shape[1]
    ranks_all = stats.rankdata(np.concatenate([anomalous, normal], axis=1), axis=1)
    ranks_anomalous = stats.rankdata(anomalous, axis=1)
    ranks_normal = stats.rankdata(normal, axis=1)
    placements_anomalous = (ranks_all[:, :m] - ranks_anomalous) / n  # share of normals below each anomalous image
    placements_normal = 1.0 - (ranks_all[:, m:] - ranks_normal) / m  # share of anomalous images above each normal
    auroc = placements_anomalous.mean(axis=1)
    if not covariance:
        return auroc, placements_anomalous.var(axis=1, ddof=1) / m + placements_normal.var(axis=1, ddof=1) / n
    return auroc, np.atleast_2d(np.cov(placements_anomalous)) / m + np.atleast_2d(np.cov(placements_normal)) / n


def normal_interval(estimate: float, variance: float, settings: UncertaintySettings, scale: str = "identity",
                    method: str = "normal") -> Interval:
    """An AUROC's estimate ± z·sd, on the logit scale for `scale="logit"` (mapped back; a degenerate AUROC of 0
    or 1, or a zero variance, gives the point itself), within [0, 1]."""
    sd = math.sqrt(max(variance, 0.0))
    if scale == "logit" and 0.0 < estimate < 1.0:
        centre, sd_logit = _logit(estimate), sd / (estimate * (1 - estimate))
        low, high = (1 / (1 + math.exp(-(centre + sign * settings.z * sd_logit))) for sign in (-1, 1))
        return Interval(low, high, method)
    if scale == "logit" or sd == 0.0:
        return Interval(estimate, estimate, f"{method} (degenerate: no spread)")
    return Interval(max(0.0, estimate - settings.z * sd), min(1.0, estimate + settings.z * sd), method)


def combine_with_seeds(estimate: float, interval: Interval, per_seed: Sequence[float],
                       settings: UncertaintySettings, bounds: tuple[float, float] = (0.0, 1.0)) -> Interval:
    """The test-set interval of a mean over seeds widened by the seeds' spread: each half-width grows to
    sqrt(half² + (z·s/√k)²), kept within the metric's `bounds`. With one seed, the interval itself."""
    if len(per_seed) < 2:
        return interval
    seed_half = settings.z * float(np.std(per_seed, ddof=1)) / math.sqrt(len(per_seed))
    low = max(bounds[0], estimate - math.hypot(estimate - interval.low, seed_half))
    high = min(bounds[1], estimate + math.hypot(interval.high - estimate, seed_half))
    return Interval(low, high, f"{interval.method} + seeds")


# ---- evidence for claims -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What we know about a difference Δ: its estimate and a distribution for one-sided p-values.

    Either bootstrap draws of Δ (paired: the same resamples for both arms) or a normal with standard error
    `se`; `seed_sd` is the standard error the seeds add (s/√k), convolved with the draws as a normal. A normal
    on the logit scale (`scale="logit"`) describes Δ = a − `shift` for an AUROC a against a constant."""

    estimate: float
    draws: np.ndarray | None = None
    se: float = 0.0
    seed_sd: float = 0.0
    method: str = ""
    scale: str = "identity"
    shift: float = 0.0

    def _standardised(self, threshold: float) -> float | None:
        """(threshold − estimate)/sd on the normal's scale; None when there is no spread (a point mass)."""
        sd = math.hypot(self.se, self.seed_sd)
        if self.scale == "logit":
            value, at = self.estimate + self.shift, threshold + self.shift
            if sd == 0 or not 0 < value < 1:
                return None
            if not 0 < at < 1:
                return -math.inf if at <= 0 else math.inf
            return (_logit(at) - _logit(value)) / (sd / (value * (1 - value)))
        return None if sd == 0 else (threshold - self.estimate) / sd

    def cdf(self, threshold: float) -> float:
        """P(Δ ≤ threshold): a one-sided p-value of the hypothesis Δ > threshold."""
        if self.draws is not None:
            if self.seed_sd > 0:
                return float(np.mean(stats.norm.cdf((threshold - self.draws) / self.seed_sd)))
            return float(np.mean(self.draws <= threshold + 1e-12))
        z = self._standardised(threshold)
        return (1.0 if threshold >= self.estimate - 1e-12 else 0.0) if z is None else float(stats.norm.cdf(z))

    def survival(self, threshold: float) -> float:
        """P(Δ ≥ threshold): a one-sided p-value of the hypothesis Δ < threshold."""
        if self.draws is not None:
            if self.seed_sd > 0:
                return float(np.mean(stats.norm.sf((threshold - self.draws) / self.seed_sd)))
            return float(np.mean(self.draws >= threshold - 1e-12))
        z = self._standardised(threshold)
        return (1.0 if threshold <= self.estimate + 1e-12 else 0.0) if z is None else float(stats.norm.sf(z))

    def interval(self, level: float) -> Interval:
        """The central `level` interval of Δ (the inverse of `cdf`)."""
        tail = (1 - level) / 2
        if self.draws is not None and self.seed_sd == 0:
            low, high = np.quantile(self.draws, [tail, 1 - tail])
            return Interval(float(low), float(high), self.method)
        if self.draws is not None:
            spread = float(np.ptp(self.draws)) + 10 * self.seed_sd
            bracket = (float(self.draws.min()) - spread, float(self.draws.max()) + spread)
            low, high = (optimize.brentq(lambda c, p=p: self.cdf(c) - p, *bracket) for p in (tail, 1 - tail))
            return Interval(low, high, self.method)
        sd = math.hypot(self.se, self.seed_sd)
        if self.scale == "logit":
            settings = UncertaintySettings(level=level)
            interval = normal_interval(self.estimate + self.shift, sd**2, settings, "logit", self.method)
            return interval.shifted(-self.shift)
        z = float(stats.norm.ppf(1 - tail))
        return Interval(self.estimate - z * sd, self.estimate + z * sd, self.method)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
    result = np.empty_like(p)
    result[order] = np.minimum(adjusted, 1.0)
    return result.tolist()


__all__ = [
    "BestMinusLast", "BootstrapResult", "CurveMetric", "Evidence", "ImageBootstrap", "Interval", "LabelledImages",
    "Mean", "UncertaintySettings", "combine_with_seeds", "curves_needed", "delong", "holm", "normal_interval",
]
