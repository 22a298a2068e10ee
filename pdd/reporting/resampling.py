"""Image metrics of many score vectors on many bootstrap resamples of one test set, at once.

A bootstrap resample of a test set is a vector of counts (how often each image was drawn). Every image metric
depends only on the order of the scores, so each score vector ("curve") is sorted once. Every metric is then
read at the thresholds set by the anomalous images' scores (`score >= y_j`): the true positives there are the
anomalous counts minus those strictly below y_j, the false positives the normal counts minus those strictly
below, both cumulative sums of a resample's counts in the curve's order. AUROC (ties count half), AP
(scikit-learn's step sum), F1-max and both operating points only change at such thresholds, so their values
there are exact: O(n) per resample and curve, no sort inside the resampling loop. With counts of one it gives
exactly the numbers of `pdd.engine.metrics` (tests/reporting/test_resampling.py checks the five metrics on
resampled test sets against scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pdd.engine.metrics import IMAGE_METRIC_NAMES, OPERATING_POINT

AUROC = "image_AUROC"
F1_EPS = 1e-8  # the authors' 2PR/(P+R+1e-8), as pdd.engine.metrics.f1_max
THRESHOLD_EPS = 1e-12  # as pdd.engine.metrics' operating points
# AUROC by matrix product while n0·n1 <= this × (n0 + n1): BLAS's flops against numpy's gathers, measured
# (benchmarks/bench_report.py)
PRODUCT_COST_RATIO = 150
PAIR_ELEMENTS = 2**22  # elements (curves × normal × anomalous images) of the pair matrices of one product
PAIR_CACHE_BYTES = 2**30  # pair matrices kept between statistic calls while all of them fit in this


@dataclass(frozen=True)
class SortedCurves:
    """K score vectors over the same test images, each sorted once.

    `normal_columns` / `anomalous_columns`: the positions (in the test set) of the normal and anomalous images,
    shared by every curve; `normal_order` / `anomalous_order` (K, n0) / (K, n1): each curve's ascending order of
    them (indices into those columns); for each anomalous image (in column order), how many normal images score
    strictly below it (`normal_below`) or at most as high (`normal_upto`), and how many anomalous images strictly
    below it (`anomalous_below`), per curve; `normal_scores` / `anomalous_scores` in column order."""

    normal_columns: np.ndarray
    anomalous_columns: np.ndarray
    normal_order: np.ndarray
    anomalous_order: np.ndarray
    normal_below: np.ndarray
    normal_upto: np.ndarray
    anomalous_below: np.ndarray
    normal_scores: np.ndarray
    anomalous_scores: np.ndarray
    # the pair matrices of `auroc_by_product`, built on first use (every statistic call reuses them)
    pairs: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, columns: np.ndarray | None = None) -> SortedCurves:
        """`scores` (K, m) of the images at `columns` of the test set (all of them when None), labelled `labels`."""
        scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        labels = np.asarray(labels)
        columns = np.arange(scores.shape[1]) if columns is None else np.asarray(columns)
        normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        normal_scores, anomalous_scores = scores[:, normal], scores[:, anomalous]
        normal_order = np.argsort(normal_scores, axis=1, kind="stable")
        anomalous_order = np.argsort(anomalous_scores, axis=1, kind="stable")
        sorted_normal = np.take_along_axis(normal_scores, normal_order, axis=1)
        sorted_anomalous = np.take_along_axis(anomalous_scores, anomalous_order, axis=1)

        def rank(sorted_scores: np.ndarray, side: str) -> np.ndarray:
            return np.stack([np.searchsorted(row, values, side=side)  # type: ignore[call-overload]
                             for row, values in zip(sorted_scores, anomalous_scores)])

        return cls(columns[normal], columns[anomalous], normal_order, anomalous_order, rank(sorted_normal, "left"),
                   rank(sorted_normal, "right"), rank(sorted_anomalous, "left"), normal_scores, anomalous_scores)

    def __len__(self) -> int:
        return self.normal_order.shape[0]

    def rows(self, start: int, stop: int) -> SortedCurves:
        return SortedCurves(self.normal_columns, self.anomalous_columns, *(
            array[start:stop] for array in (self.normal_order, self.anomalous_order, self.normal_below,
                                            self.normal_upto, self.anomalous_below, self.normal_scores,
                                            self.anomalous_scores)))

    @property
    def auroc_by_product(self) -> bool:
        """Whether AUROC is cheaper as counts x the (n0, n1) pair matrix (small test sets: BLAS) than by
        cumulative sums (large ones); the float32 product is exact while 2·n0·n1 < 2**24."""
        n0, n1 = self.normal_columns.size, self.anomalous_columns.size
        return n0 * n1 <= min(PRODUCT_COST_RATIO * (n0 + n1), 2**23)

    @property
    def tied(self) -> bool:
        """Whether any normal image ties with an anomalous one (then those pairs count half)."""
        return not np.array_equal(self.normal_below, self.normal_upto)


def counts_of(indices: list[np.ndarray], n_images: int) -> np.ndarray:
    """Counts (rows, n_images) of resampled image positions: one index array (rows, m_g) per stratum."""
    rows = indices[0].shape[0]
    counts = np.zeros(rows * n_images, dtype=np.float64)
    offsets = (np.arange(rows) * n_images)[:, None]
    for index in indices:
        counts += np.bincount((index + offsets).ravel(), minlength=rows * n_images)
    return counts.reshape(rows, n_images)


def _cumulative_sorted(counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """counts (R, n) taken in each curve's `order` (K, n) and summed up: (R, K·(n + 1)), curve k's block
    [0, c_1, c_1 + c_2, ...] (the count strictly below each sorted position) at k·(n + 1)."""
    rows, (curves, n) = counts.shape[0], order.shape
    out = np.zeros((rows, curves, n + 1), dtype=counts.dtype)
    np.cumsum(counts[:, order.ravel()].reshape(rows, curves, n), axis=2, out=out[..., 1:])
    return out.reshape(rows, curves * (n + 1))


def _at(cumulative: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Blocks of `_cumulative_sorted` read at per-curve positions (K, m): (R, K, m)."""
    curves, m = positions.shape
    block = cumulative.shape[1] // curves
    flat = (np.arange(curves)[:, None] * block + positions).ravel()
    return cumulative[:, flat].reshape(cumulative.shape[0], curves, m)


def auroc_by_product(curves: SortedCurves, counts: np.ndarray) -> np.ndarray:
    """AUROC (K, R) as w·Ψ·v per resample, Ψ[i, j] = 1 if normal i scores below anomalous j, 1/2 if tied."""
    normal = counts[:, curves.normal_columns].astype(np.float32)
    anomalous = counts[:, curves.anomalous_columns].astype(np.float32)
    pairs = normal.sum(axis=1, dtype=np.float64) * anomalous.sum(axis=1, dtype=np.float64)
    step = max(1, PAIR_ELEMENTS // (curves.normal_columns.size * curves.anomalous_columns.size))  # fixed: cached
    keep = 4 * curves.normal_scores.size * curves.anomalous_columns.size <= PAIR_CACHE_BYTES
    result = []
    for start in range(0, len(curves), step):
        psi = curves.pairs.get(start)
        if psi is None:
            x = curves.normal_scores[start:start + step].T[:, :, None]  # (n0, k, 1)
            y = curves.anomalous_scores[start:start + step][None]  # (1, k, n1)
            psi = ((x < y).astype(np.float32) + np.float32(0.5) * (x == y)).reshape(x.shape[0], -1)  # one GEMM
            if keep:
                curves.pairs[start] = psi
        n1 = curves.anomalous_columns.size
        products = (normal @ psi).reshape(counts.shape[0], -1, n1)
        wins = np.einsum("rkj,rj->kr", products, anomalous)
        result.append(wins.astype(np.float64) / pairs)
    return np.concatenate(result)


def auroc_by_sums(curves: SortedCurves, counts: np.ndarray) -> np.ndarray:
    """AUROC (K, R) from the normal counts summed in each curve's order, read at every anomalous image: float32
    sums (counts are integers, exact below 2**24; the final sum's rounding is ~1e-7 relative)."""
    normal = counts[:, curves.normal_columns].astype(np.float32)
    anomalous = counts[:, curves.anomalous_columns].astype(np.float32)
    below_sums = _cumulative_sorted(normal, curves.normal_order)
    below = _at(below_sums, curves.normal_below)
    if curves.tied:
        below = below + _at(below_sums, curves.normal_upto)
    else:
        below = 2 * below
    pairs = normal.sum(axis=1, dtype=np.float64) * anomalous.sum(axis=1, dtype=np.float64)
    return np.einsum("rkj,rj->kr", below, anomalous).astype(np.float64) / (2 * pairs)


def curve_metrics(curves: SortedCurves, counts: np.ndarray, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """`metrics` (names of `IMAGE_METRIC_NAMES`) of every curve for every row of `counts` (R, n_images):
    arrays (K, R). Counts and their sums are float32 (integers, exact below 2**24); F1 is 2·TP/(TP + FP + P),
    the authors' 2PR/(P + R + 1e-8) without its 1e-8."""
    if metrics == (AUROC,):
        return {AUROC: (auroc_by_product if curves.auroc_by_product else auroc_by_sums)(curves, counts)}
    normal = counts[:, curves.normal_columns].astype(np.float32)
    anomalous = counts[:, curves.anomalous_columns].astype(np.float32)  # (R, n1), column order
    negatives = normal.sum(axis=1, dtype=np.float64)[:, None]
    positives = anomalous.sum(axis=1, dtype=np.float64)[:, None]  # (R, 1)
    normal_sums = _cumulative_sorted(normal, curves.normal_order)
    below = _at(normal_sums, curves.normal_below)  # (R, K, n1)
    result = {}
    if AUROC in metrics:
        tied = _at(normal_sums, curves.normal_upto) if curves.tied else below
        # normal images tied with an anomalous one count half, as scikit-learn's trapezoids
        result[AUROC] = np.einsum("rkj,rj->rk", below + tied, anomalous) / (2 * positives * negatives)
    # the confusion matrix at the threshold `score >= y_j` of each anomalous image j
    true_pos = positives[..., None].astype(np.float32) - _at(
        _cumulative_sorted(anomalous, curves.anomalous_order), curves.anomalous_below)
    false_pos = negatives[..., None].astype(np.float32) - below
    called = true_pos + false_pos
    if "image_AP" in metrics:
        # a threshold no resampled image reaches calls nothing: precision 0 (its true positives are 0 too)
        precision = true_pos / np.maximum(called, 1)
        result["image_AP"] = np.einsum("rkj,rj->rk", precision, anomalous) / positives
    if "image_F1max" in metrics:
        result["image_F1max"] = (2 * true_pos / (called + positives[..., None].astype(np.float32))).max(axis=-1)
    if "image_sens_at_spec95" in metrics:
        allowed = false_pos <= (1.0 - OPERATING_POINT + THRESHOLD_EPS) * negatives[..., None]
        result["image_sens_at_spec95"] = np.where(allowed, true_pos, 0).max(axis=-1) / positives  # (0, 0) allowed
    if "image_spec_at_sens95" in metrics:
        reached = true_pos >= (OPERATING_POINT - THRESHOLD_EPS) * positives[..., None]
        result["image_spec_at_sens95"] = 1.0 - np.where(reached, false_pos, np.inf).min(axis=-1) / negatives
    return {name: result[name].T.astype(np.float64) for name in metrics}


__all__ = ["AUROC", "IMAGE_METRIC_NAMES", "SortedCurves", "auroc_by_product", "auroc_by_sums", "counts_of",
           "curve_metrics"]
