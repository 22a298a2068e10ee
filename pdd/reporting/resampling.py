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

from dataclasses import dataclass

import numpy as np

from pdd.engine.metrics import IMAGE_METRIC_NAMES, OPERATING_POINT

AUROC = "image_AUROC"
F1_EPS = 1e-8  # the authors' 2PR/(P+R+1e-8), as pdd.engine.metrics.f1_max
THRESHOLD_EPS = 1e-12  # as pdd.engine.metrics' operating points
# AUROC by matrix product while n0·n1 <= this × (n0 + n1): BLAS's flops against numpy's gathers, measured
# (benchmarks/bench_report.py)
PRODUCT_COST_RATIO = 150
PAIR_ELEMENTS = 2**23  # elements (curves × resamples × anomalous images) of one product


@dataclass(frozen=True)
class SortedCurves:
    """K score vectors over the same test images, each sorted once.

    `normal` / `anomalous` (K, n0) / (K, n1): the positions (in the test set) of the normal and anomalous images,
    each row in ascending order of that row's scores; for each anomalous image (in that order) how many normal
    images score strictly below it (`normal_below`) or at most as high (`normal_upto`), and how many anomalous
    images score strictly below it (`anomalous_below`)."""

    normal: np.ndarray
    anomalous: np.ndarray
    normal_below: np.ndarray
    normal_upto: np.ndarray
    anomalous_below: np.ndarray
    # the same images in test-set order, shared by every curve, and each curve's scores of them (K, n0) / (K, n1)
    normal_columns: np.ndarray
    anomalous_columns: np.ndarray
    normal_scores: np.ndarray
    anomalous_scores: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, columns: np.ndarray | None = None) -> SortedCurves:
        """`scores` (K, m) of the images at `columns` of the test set (all of them when None), labelled `labels`."""
        scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        labels = np.asarray(labels)
        columns = np.arange(scores.shape[1]) if columns is None else np.asarray(columns)
        sorted_parts, natural = [], []
        for label in (0, 1):
            positions = np.flatnonzero(labels == label)
            order = np.argsort(scores[:, positions], axis=1, kind="stable")
            sorted_parts.append((columns[positions][order], np.take_along_axis(scores[:, positions], order, axis=1)))
            natural += [columns[positions], scores[:, positions]]
        (normal, normal_scores), (anomalous, anomalous_scores) = sorted_parts

        def rank(sorted_scores: np.ndarray, side: str) -> np.ndarray:
            return np.stack([np.searchsorted(row, values, side=side)  # type: ignore[call-overload]
                             for row, values in zip(sorted_scores, anomalous_scores)])

        return cls(normal, anomalous, rank(normal_scores, "left"), rank(normal_scores, "right"),
                   rank(anomalous_scores, "left"), natural[0], natural[2], natural[1], natural[3])

    def __len__(self) -> int:
        return self.normal.shape[0]

    def rows(self, start: int, stop: int) -> SortedCurves:
        return SortedCurves(self.normal[start:stop], self.anomalous[start:stop], self.normal_below[start:stop],
                            self.normal_upto[start:stop], self.anomalous_below[start:stop], self.normal_columns,
                            self.anomalous_columns, self.normal_scores[start:stop], self.anomalous_scores[start:stop])

    @property
    def auroc_by_product(self) -> bool:
        """Whether AUROC is cheaper as counts x the (n0, n1) pair matrix (small test sets: BLAS) than by
        cumulative sums (large ones); the float32 product is exact while 2·n0·n1 < 2**24."""
        n0, n1 = self.normal.shape[1], self.anomalous.shape[1]
        return n0 * n1 <= min(PRODUCT_COST_RATIO * (n0 + n1), 2**23)


def counts_of(indices: list[np.ndarray], n_images: int) -> np.ndarray:
    """Counts (rows, n_images) of resampled image positions: one index array (rows, m_g) per stratum."""
    rows = indices[0].shape[0]
    counts = np.zeros(rows * n_images, dtype=np.float64)
    offsets = (np.arange(rows) * n_images)[:, None]
    for index in indices:
        counts += np.bincount((index + offsets).ravel(), minlength=rows * n_images)
    return counts.reshape(rows, n_images)


def _cumulative(counts: np.ndarray) -> np.ndarray:
    """[0, c_1, c_1 + c_2, ...] along the last axis: the count strictly below each position."""
    out = np.zeros((*counts.shape[:-1], counts.shape[-1] + 1))
    np.cumsum(counts, axis=-1, out=out[..., 1:])
    return out


def _at(cumulative: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """cumulative (R, K, n+1) read at positions (K, m): (R, K, m)."""
    return np.take_along_axis(cumulative, np.broadcast_to(positions, (cumulative.shape[0], *positions.shape)), axis=2)


def auroc_by_product(curves: SortedCurves, counts: np.ndarray) -> np.ndarray:
    """AUROC (K, R) as w·Ψ·v per resample, Ψ[i, j] = 1 if normal i scores below anomalous j, 1/2 if tied."""
    normal = counts[:, curves.normal_columns].astype(np.float32)
    anomalous = counts[:, curves.anomalous_columns].astype(np.float32)
    pairs = normal.sum(axis=1, dtype=np.float64) * anomalous.sum(axis=1, dtype=np.float64)
    step = max(1, PAIR_ELEMENTS // (counts.shape[0] * curves.anomalous_columns.size))
    result = []
    for start in range(0, len(curves), step):
        x = curves.normal_scores[start:start + step].T[:, :, None]  # (n0, k, 1)
        y = curves.anomalous_scores[start:start + step][None]  # (1, k, n1)
        psi = (x < y).astype(np.float32) + np.float32(0.5) * (x == y)  # (n0, k, n1): one GEMM for all k
        products = (normal @ psi.reshape(psi.shape[0], -1)).reshape(counts.shape[0], -1, psi.shape[2])
        wins = np.einsum("rkj,rj->kr", products, anomalous)
        result.append(wins.astype(np.float64) / pairs)
    return np.concatenate(result)


def curve_metrics(curves: SortedCurves, counts: np.ndarray, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """`metrics` (names of `IMAGE_METRIC_NAMES`) of every curve for every row of `counts` (R, n_images):
    arrays (K, R)."""
    if metrics == (AUROC,) and curves.auroc_by_product:
        return {AUROC: auroc_by_product(curves, counts)}
    normal_below = _cumulative(counts[:, curves.normal])  # (R, K, n0 + 1)
    anomalous_counts = counts[:, curves.anomalous]  # (R, K, n1)
    negatives, positives = normal_below[..., -1], anomalous_counts.sum(axis=-1)  # (R, K)
    below = _at(normal_below, curves.normal_below)
    result = {}
    if AUROC in metrics:
        tied = below if np.array_equal(curves.normal_upto, curves.normal_below) else _at(normal_below,
                                                                                         curves.normal_upto)
        # normal images tied with an anomalous one count half, as scikit-learn's trapezoids
        result[AUROC] = np.einsum("rkj,rkj->rk", below + tied, anomalous_counts) / (2 * positives * negatives)
    if len(result) < len(metrics):
        # the confusion matrix at the threshold `score >= y_j` of each anomalous image j
        true_pos = positives[..., None] - _at(_cumulative(anomalous_counts), curves.anomalous_below)
        false_pos = negatives[..., None] - below
        recall = true_pos / positives[..., None]
        called = true_pos + false_pos
        # a threshold no resampled image reaches: nothing called, precision 0 (recall is 0 there too)
        precision = np.divide(true_pos, called, out=np.zeros_like(true_pos), where=called > 0)
        if "image_AP" in metrics:
            result["image_AP"] = np.einsum("rkj,rkj->rk", precision, anomalous_counts) / positives
        if "image_F1max" in metrics:
            result["image_F1max"] = (2 * precision * recall / (precision + recall + F1_EPS)).max(axis=-1)
        false_positive_rate = false_pos / negatives[..., None]
        if "image_sens_at_spec95" in metrics:
            allowed = false_positive_rate <= 1.0 - OPERATING_POINT + THRESHOLD_EPS
            result["image_sens_at_spec95"] = np.where(allowed, recall, 0.0).max(axis=-1)  # (0, 0) always allowed
        if "image_spec_at_sens95" in metrics:
            reached = recall >= OPERATING_POINT - THRESHOLD_EPS
            result["image_spec_at_sens95"] = np.where(reached, 1.0 - false_positive_rate, 0.0).max(axis=-1)
    return {name: result[name].T for name in metrics}


__all__ = ["AUROC", "IMAGE_METRIC_NAMES", "SortedCurves", "counts_of", "curve_metrics"]
