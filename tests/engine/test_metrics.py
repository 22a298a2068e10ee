import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from pdd.engine.metrics import (
    aupro,
    compute_metrics,
    f1_max,
    image_metrics,
    pixel_auroc,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)


def _brute_force_aupro(masks, maps, max_fpr=0.3):
    """PRO/FPR re-measured from scratch at every distinct threshold, then integrated up to max_fpr."""
    masks = masks > 0
    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask)
        regions += [(index, labelled == region) for region in range(1, count + 1)]
    negatives = ~masks
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        predicted = maps >= threshold
        fpr = (predicted & negatives).sum() / negatives.sum()
        pro = np.mean([(predicted[index] & region).sum() / region.sum() for index, region in regions])
        points.append((fpr, pro))
    fpr, pro = map(np.array, zip(*points))
    grid = np.linspace(0, max_fpr, 20001)
    return np.trapezoid(np.interp(grid, fpr, pro), grid) / max_fpr


def _random_segmentation(rng, n=6, size=12):
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[0, 2:5, 2:6] = 1
    masks[0, 8:10, 8:11] = 1  # a second region in the same image
    masks[2, 4:9, 3:7] = 1
    masks[3, 0:2, 0:2] = 1
    maps = rng.random(masks.shape) + 0.8 * masks
    return masks, np.round(maps, 2)  # rounding creates ties between pixels


def test_aupro_matches_a_brute_force_threshold_sweep():
    masks, maps = _random_segmentation(np.random.default_rng(0))
    assert aupro(masks, maps) == pytest.approx(_brute_force_aupro(masks, maps), abs=1e-4)


def test_aupro_weights_regions_not_pixels():
    masks = np.zeros((2, 10, 10), dtype=np.uint8)
    masks[0, :6, :6] = 1  # 36-pixel region found
    masks[1, 0, 0] = 1  # 1-pixel region missed
    maps = np.zeros(masks.shape)
    maps[0, :6, :6] = 1.0
    # curve (0, 0) -> (0, 0.5) at threshold 1 -> (1, 1) at threshold 0; linear up to FPR 0.3:
    # area = 0.3 * (0.5 + 0.65) / 2, normalised by 0.3
    assert aupro(masks, maps) == pytest.approx(0.575, abs=1e-9)
    assert pixel_auroc(masks, maps) > 0.95


def test_perfect_and_inverted_maps():
    masks, _ = _random_segmentation(np.random.default_rng(1))
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    assert aupro(masks, -masks.astype(float)) == pytest.approx(0.0, abs=1e-9)


def test_pixel_metrics_undefined_without_defects():
    empty = np.zeros((2, 4, 4))
    assert aupro(empty, np.random.rand(2, 4, 4)) is None
    assert pixel_auroc(empty, np.random.rand(2, 4, 4)) is None


def test_image_metrics_against_hand_computed_values():
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    result = image_metrics(labels, scores)
    assert result["image_AUROC"] == pytest.approx(8 / 9)
    # precision/recall at threshold 0.35: 3/4, 3/3 -> F1 6/7, the best of all thresholds
    assert result["image_F1max"] == pytest.approx(6 / 7, abs=1e-6)
    assert result["image_AP"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert f1_max(np.array(labels), np.array(scores)) == result["image_F1max"]


def test_operating_points_against_hand_computed_values():
    # 20 normal images scored 0..19, 4 anomalous ones at 18.5, 19.5, 10.5 and 2.5
    labels = np.r_[np.zeros(20, dtype=int), np.ones(4, dtype=int)]
    scores = np.r_[np.arange(20.0), 18.5, 19.5, 10.5, 2.5]
    # specificity >= 95 % allows one false positive (19): the threshold 18.5 then finds 2 of 4 anomalies
    assert sensitivity_at_specificity(labels, scores) == 0.5
    # sensitivity >= 95 % needs all four, i.e. the threshold 2.5: 17 normal images (3..19) lie above it
    assert specificity_at_sensitivity(labels, scores) == pytest.approx(3 / 20)
    result = image_metrics(labels, scores)
    assert result["image_sens_at_spec95"] == 0.5 and result["image_spec_at_sens95"] == pytest.approx(0.15)


def test_one_label_only_gives_none():
    assert image_metrics([1, 1], [0.2, 0.4]) == dict.fromkeys(
        ["image_AUROC", "image_AP", "image_F1max", "image_sens_at_spec95", "image_spec_at_sens95"])


def test_pooled_and_per_class_and_masks_only_where_present():
    rng = np.random.default_rng(2)
    labels = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    classes = np.array(["brain"] * 4 + ["chest"] * 4)
    scores = rng.random(8) + labels * 0.5
    masks = np.zeros((8, 8, 8), dtype=np.uint8)
    masks[1, 2:4, 2:4] = masks[3, 5:7, 1:3] = 1  # the brain anomalies have masks, chest ones do not
    maps = rng.random(masks.shape) + masks
    has_mask = np.array([True, True, True, True, True, False, False, False])
    result = compute_metrics(labels, scores, classes, masks, maps, has_mask)

    assert result["pooled"]["image_AUROC"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["per_class"]["chest"]["image_AUROC"] == pytest.approx(roc_auc_score(labels[4:], scores[4:]))
    assert result["per_class"]["chest"]["pixel_AUROC"] is None
    brain = result["per_class"]["brain"]["pixel_AUROC"]
    assert brain == pytest.approx(roc_auc_score(masks[:4].reshape(-1), maps[:4].reshape(-1)))
    # pooled pixel metrics use exactly the images whose pixel truth is known (has_mask), normal or not
    keep = np.array([0, 1, 2, 3, 4])
    expected = roc_auc_score(masks[keep].reshape(-1), maps[keep].reshape(-1))
    assert result["pooled"]["pixel_AUROC"] == pytest.approx(expected)


def test_single_class_has_empty_per_class_and_no_pixel_metrics_without_masks():
    result = compute_metrics([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.2], classes=["headct"] * 4)
    assert result["per_class"] == {}
    assert result["pooled"]["pixel_AUPRO"] is None
    assert result["pooled"]["image_AUROC"] == pytest.approx(0.75)
