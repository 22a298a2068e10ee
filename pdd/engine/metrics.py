"""Image- and pixel-level anomaly-detection metrics, computed from one score per image.

The authors' single-class evaluator scored only the first image of every batch; here every image
contributes its own score, so results do not depend on the evaluation batch size. A metric that is
undefined (one label value only, no masks) is reported as None, never as a made-up number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

# The clinician's operating points: sensitivity where specificity is at least 95 %, and the reverse
OPERATING_POINT = 0.95
IMAGE_METRIC_NAMES = ("image_AUROC", "image_AP", "image_F1max", "image_sens_at_spec95", "image_spec_at_sens95")
METRIC_NAMES = (*IMAGE_METRIC_NAMES, "pixel_AUROC", "pixel_AUPRO")
AUPRO_MAX_FPR = 0.3


def _has_both_labels(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < int(labels.sum()) < labels.size


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 over all thresholds of the precision-recall curve (the authors' 2PR/(P+R+1e-8))."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.max(2 * precision * recall / (precision + recall + 1e-8)))


def f1_max_threshold(labels: Sequence[int], scores: Sequence[float]) -> tuple[float, float]:
    """(threshold, F1) at the F1-max operating point: scores >= threshold are called anomalous.

    The same curve and formula as `f1_max`, so the F1 at this threshold is the reported F1-max."""
    precision, recall, thresholds = precision_recall_curve(np.asarray(labels), np.asarray(scores, dtype=np.float64))
    f1 = 2 * precision[:-1] * recall[:-1] / (precision[:-1] + recall[:-1] + 1e-8)  # the last point has no threshold
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def sensitivity_at_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float = OPERATING_POINT) -> float:
    """The highest sensitivity (TPR) of any threshold whose specificity (1 - FPR) is at least `specificity`.

    A threshold of the ROC curve itself, never an interpolation between two: a number a clinician can set."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(np.max(tpr[fpr <= 1.0 - specificity + 1e-12]))


def specificity_at_sensitivity(labels: np.ndarray, scores: np.ndarray, sensitivity: float = OPERATING_POINT) -> float:
    """The highest specificity (1 - FPR) of any threshold whose sensitivity (TPR) is at least `sensitivity`."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(np.max(1.0 - fpr[tpr >= sensitivity - 1e-12]))


def image_metrics(labels: Sequence[int], scores: Sequence[float]) -> dict[str, float | None]:
    """The image metrics of `IMAGE_METRIC_NAMES`; all None unless both labels occur."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if not _has_both_labels(labels):
        return dict.fromkeys(IMAGE_METRIC_NAMES)
    return {
        "image_AUROC": float(roc_auc_score(labels, scores)),
        "image_AP": float(average_precision_score(labels, scores)),
        "image_F1max": f1_max(labels, scores),
        "image_sens_at_spec95": sensitivity_at_specificity(labels, scores),
        "image_spec_at_sens95": specificity_at_sensitivity(labels, scores),
    }


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float | None:
    truth = np.asarray(masks).reshape(-1) > 0
    if not _has_both_labels(truth):
        return None
    return float(roc_auc_score(truth, np.asarray(maps, dtype=np.float64).reshape(-1)))


def aupro(masks: np.ndarray, maps: np.ndarray, max_fpr: float = AUPRO_MAX_FPR) -> float | None:
    """Area under the per-region-overlap curve up to `max_fpr`, divided by `max_fpr` (so in [0, 1]).

    Every connected defect region weighs the same however large it is; the false-positive rate is taken
    over all defect-free pixels of all images. Sorting the pixels once by score gives the PRO and FPR at
    every distinct threshold exactly, instead of on a coarse threshold grid.
    """
    masks = np.asarray(masks) > 0
    maps = np.asarray(maps, dtype=np.float64)
    regions = np.zeros(masks.shape, dtype=np.int64)
    n_regions = 0
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask)
        regions[index] = np.where(labelled > 0, labelled + n_regions, 0)
        n_regions += count
    n_negative = int((~masks).sum())
    if n_regions == 0 or n_negative == 0:
        return None

    region_ids = regions.reshape(-1)
    region_sizes = np.bincount(region_ids, minlength=n_regions + 1).astype(np.float64)
    # each defect pixel adds 1/(|region| * n_regions) to the PRO, each normal pixel 1/n_negative to the FPR
    pro_step = np.where(region_ids > 0, 1.0 / (region_sizes[region_ids] * n_regions), 0.0)
    fpr_step = np.where(region_ids == 0, 1.0 / n_negative, 0.0)

    order = np.argsort(-maps.reshape(-1), kind="stable")
    sorted_scores = maps.reshape(-1)[order]
    pro = np.cumsum(pro_step[order])
    fpr = np.cumsum(fpr_step[order])
    # one point per distinct threshold: the last pixel of every run of equal scores
    distinct = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    fpr = np.r_[0.0, fpr[distinct]]
    pro = np.r_[0.0, pro[distinct]]

    cut = np.searchsorted(fpr, max_fpr, side="right")
    if cut < fpr.size:  # close the curve exactly at max_fpr by linear interpolation
        fraction = (max_fpr - fpr[cut - 1]) / (fpr[cut] - fpr[cut - 1])
        fpr = np.r_[fpr[:cut], max_fpr]
        pro = np.r_[pro[:cut], pro[cut - 1] + fraction * (pro[cut] - pro[cut - 1])]
    area = np.sum(np.diff(fpr) * (pro[1:] + pro[:-1]) / 2)  # trapezoid rule (np.trapz was renamed in numpy 2)
    return float(np.clip(area / max_fpr, 0.0, 1.0))


def compute_metrics(
    labels: Sequence[int],
    scores: Sequence[float],
    classes: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    maps: np.ndarray | None = None,
    has_mask: Sequence[bool] | None = None,
    max_fpr: float = AUPRO_MAX_FPR,
) -> dict[str, dict]:
    """`{"pooled": {...}, "per_class": {cls: {...}}}` with the metrics of `METRIC_NAMES`.

    Pixel metrics use the images whose pixel truth is known (`has_mask`: anomalous images with a mask,
    normal images of annotated classes); they are None when no anomalous image has a mask. Pooled
    numbers are computed on the pooled scores (as the authors' multi-class script), not averaged over
    classes; `per_class` stays empty for single-class sets.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes if classes is not None else [""] * labels.size)
    if has_mask is None:
        has_mask = np.zeros(labels.size, dtype=bool) if masks is None else np.ones(labels.size, dtype=bool)
    has_mask = np.asarray(has_mask, dtype=bool)

    def metrics_for(selection: np.ndarray) -> dict[str, float | None]:
        result = image_metrics(labels[selection], scores[selection])
        pixel_selection = selection & has_mask
        if masks is None or not np.any(pixel_selection & (labels == 1)):
            return {**result, "pixel_AUROC": None, "pixel_AUPRO": None}
        selected_masks, selected_maps = masks[pixel_selection], maps[pixel_selection]
        return {
            **result,
            "pixel_AUROC": pixel_auroc(selected_masks, selected_maps),
            "pixel_AUPRO": aupro(selected_masks, selected_maps, max_fpr),
        }

    everything = np.ones(labels.size, dtype=bool)
    distinct_classes = sorted(set(classes.tolist()))
    per_class = {}
    if len(distinct_classes) > 1:
        per_class = {name: metrics_for(classes == name) for name in distinct_classes}
    return {"pooled": metrics_for(everything), "per_class": per_class}
