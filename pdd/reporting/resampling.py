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


@dataclass(frozen=True)
class SortedCurve:
    """One score vector over some test images, sorted once.

    `normal` / `anomalous`: the positions (in the test set) of its normal and anomalous images, each in
    ascending score order; for each anomalous image (in that order) how many normal images score strictly below
    it (`normal_below`) or at most as high (`normal_upto`), and how many anomalous images strictly below it."""

    normal: np.ndarray
    anomalous: np.ndarray
    normal_below: np.ndarray
    normal_upto: np.ndarray
    anomalous_below: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, columns: np.ndarray | None = None) -> SortedCurve:
        """`scores` and `labels` of the images at `columns` of the test set (all of them when None)."""
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels)
        columns = np.arange(scores.size) if columns is None else np.asarray(columns)
        normal = np.flatnonzero(labels == 0)
        anomalous = np.flatnonzero(labels == 1)
        normal = normal[np.argsort(scores[normal], kind="stable")]
        anomalous = anomalous[np.argsort(scores[anomalous], kind="stable")]
        normal_scores, anomalous_scores = scores[normal], scores[anomalous]
        return cls(
            columns[normal], columns[anomalous],
            np.searchsorted(normal_scores, anomalous_scores, side="left"),
            np.searchsorted(normal_scores, anomalous_scores, side="right"),
            np.searchsorted(anomalous_scores, anomalous_scores, side="left"),
        )


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
    out = np.zeros((counts.shape[0], counts.shape[1] + 1))
    np.cumsum(counts, axis=1, out=out[:, 1:])
    return out


def curve_metrics(curve: SortedCurve, counts: np.ndarray, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """`metrics` (names of `IMAGE_METRIC_NAMES`) of `curve` for every row of `counts` (rows, n_images)."""
    normal_below = _cumulative(counts[:, curve.normal])
    anomalous_counts = counts[:, curve.anomalous]
    negatives, positives = normal_below[:, -1], anomalous_counts.sum(axis=1)
    result = {}
    if AUROC in metrics:
        below = normal_below[:, curve.normal_below]
        ties = normal_below[:, curve.normal_upto] - below  # normal images tied with each anomalous one count half
        result[AUROC] = np.einsum("ij,ij->i", below + ties / 2, anomalous_counts) / (positives * negatives)
    if len(result) == len(metrics):
        return result
    # the confusion matrix at the threshold `score >= y_j` of each anomalous image j
    true_pos = positives[:, None] - _cumulative(anomalous_counts)[:, curve.anomalous_below]
    false_pos = negatives[:, None] - normal_below[:, curve.normal_below]
    recall = true_pos / positives[:, None]
    called = true_pos + false_pos
    # a threshold no resampled image reaches: nothing called, precision 0 (recall is 0 there too)
    precision = np.divide(true_pos, called, out=np.zeros_like(true_pos), where=called > 0)
    if "image_AP" in metrics:
        result["image_AP"] = np.einsum("ij,ij->i", precision, anomalous_counts) / positives
    if "image_F1max" in metrics:
        f1 = 2 * precision * recall / (precision + recall + F1_EPS)
        result["image_F1max"] = f1.max(axis=1)
    false_positive_rate = false_pos / negatives[:, None]
    if "image_sens_at_spec95" in metrics:
        allowed = false_positive_rate <= 1.0 - OPERATING_POINT + THRESHOLD_EPS
        result["image_sens_at_spec95"] = np.max(np.where(allowed, recall, 0.0), axis=1)  # (0, 0) is always allowed
    if "image_spec_at_sens95" in metrics:
        reached = recall >= OPERATING_POINT - THRESHOLD_EPS
        result["image_spec_at_sens95"] = np.max(np.where(reached, 1.0 - false_positive_rate, 0.0), axis=1)
    return {name: result[name] for name in metrics}


__all__ = ["AUROC", "IMAGE_METRIC_NAMES", "SortedCurve", "counts_of", "curve_metrics"]
