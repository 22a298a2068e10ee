"""Metrics of resampled test sets from counts in score order equal scikit-learn's on the resampled images."""

from __future__ import annotations

import numpy as np
import pytest

from pdd.engine.metrics import IMAGE_METRIC_NAMES, image_metrics
from pdd.reporting.resampling import AUROC, SortedCurves, counts_of, curve_metrics


# every metric at once, and AUROC alone by its two paths (small and large test sets); float32 sums
PATHS = {"every metric": (IMAGE_METRIC_NAMES, False), "AUROC by sums": ((AUROC,), False),
         "AUROC by pair product": ((AUROC,), True)}


def test_every_metric_of_every_resample_equals_scikit_learn(monkeypatch):
    rng = np.random.default_rng(0)
    for trial in range(10):
        n0, n1 = rng.integers(2, 25, size=2)
        labels = rng.permutation(np.r_[np.zeros(n0, dtype=int), np.ones(n1, dtype=int)])
        # three curves on the same images, rounded to one decimal: ties within and across the classes
        scores = np.round(rng.normal(size=(3, labels.size)) + labels * rng.uniform(-1, 2), 1)
        normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        drawn = [normal[rng.integers(0, n0, (3, n0))], anomalous[rng.integers(0, n1, (3, n1))]]
        counts = np.vstack([np.ones(labels.size), counts_of(drawn, labels.size)])
        rows = [np.arange(labels.size)] + [np.r_[drawn[0][row], drawn[1][row]] for row in range(3)]
        expected = [[image_metrics(labels[images], scores[k, images]) for images in rows] for k in range(3)]
        for path, (metrics, product) in PATHS.items():
            monkeypatch.setattr(SortedCurves, "auroc_by_product", property(lambda self, product=product: product))
            got = curve_metrics(SortedCurves.of(scores, labels), counts, metrics)
            for k in range(3):
                for row in range(len(rows)):
                    for name in metrics:
                        assert got[name][k, row] == pytest.approx(expected[k][row][name], abs=1e-6), \
                            (path, trial, k, row, name)


def test_curves_over_one_class_read_only_its_images():
    rng = np.random.default_rng(1)
    labels = np.tile([0, 1], 10)
    scores = rng.normal(size=20) + labels
    columns = np.arange(10, 20)
    curves = SortedCurves.of(scores[columns][None], labels[columns], columns)
    counts = np.ones((1, 20))
    counts[0, :10] = 7  # images of the other class: must not count
    assert curve_metrics(curves, counts, (AUROC,))[AUROC][0, 0] == pytest.approx(
        image_metrics(labels[columns], scores[columns])[AUROC])
