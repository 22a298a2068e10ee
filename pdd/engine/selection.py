"""Which epoch `best_of_test` reports: the scorers that rank the per-epoch evaluations.

* `per_image`: the pooled image AUROC over every test image (pdd's own evaluation).
* `official_first_image`: the AUROC the authors' single-class evaluator prints and selects by
  (`utils/evaluation.py::evaluation` of `OxygenLu/PDD@573feed`; reference `pdd_official_code.md` §4.3). It walks
  the test set in batches of `val_batch_size` (pdd: `eval.batch_size`), keeps the score of each batch's first
  image only and labels it with the largest label in the batch, then rounds `roc_auc_score` to 4 decimals; the
  training script keeps the first epoch with the highest such value. Its per-image score is the same anomaly map
  maximum pdd computes, so it is recomputed exactly from each epoch's per-image scores in split order.

The batches follow pdd's split order (`split.csv`): the official order (`os.listdir` of the defect folders,
sorted file names inside each) depends on the file system and is not recoverable from the prepared layout.
Whatever selects the epoch, the metrics reported for it are pdd's per-image ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score

SelectionScorer = Literal["per_image", "official_first_image"]
SELECTION_SCORERS: tuple[SelectionScorer, ...] = ("per_image", "official_first_image")
OFFICIAL_ROUNDING = 4  # the authors' evaluator returns round(roc_auc_score(...), 4)


def official_first_image_auroc(labels: Sequence[int], scores: Sequence[float], batch_size: int) -> float | None:
    """The authors' single-class AUROC: one point per batch (first image's score, the batch's max label).

    None when every batch gets the same label (the official evaluator then fails and records nothing)."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"need one label per score, got {labels.shape} and {scores.shape}")
    starts = np.arange(0, labels.size, batch_size)
    batch_labels = np.maximum.reduceat(labels, starts) if labels.size else labels
    if np.unique(batch_labels).size < 2:
        return None
    return round(float(roc_auc_score(batch_labels, scores[starts])), OFFICIAL_ROUNDING)


def best_epoch(criteria: Mapping[int, float | None]) -> int:
    """The epoch with the highest criterion, the earliest on ties; undefined (None) criteria never win
    unless every one is undefined (then the earliest epoch)."""
    ordered = sorted(criteria.items())
    return max(ordered, key=lambda item: -1.0 if item[1] is None else item[1])[0]
