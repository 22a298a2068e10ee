from pdd.engine.evaluate import ScoredTestSet, _Selection, select_best_of_test
from pdd.engine.selection import official_first_image_auroc


def _evaluation(auroc):
    return {"pooled": {"image_AUROC": auroc}, "per_class": {}}


def test_best_of_test_takes_the_highest_auroc_and_the_earliest_on_ties():
    per_epoch = {30: _evaluation(0.9), 10: _evaluation(0.7), 20: _evaluation(0.9), 40: _evaluation(None)}
    assert select_best_of_test(per_epoch)[0] == 20
    assert select_best_of_test({5: _evaluation(None), 10: _evaluation(0.1)})[0] == 10


def test_saved_examples_are_half_anomalous_masked_first_then_normal():
    scored = ScoredTestSet(examples={"normal": ["n1", "n2", "n3"], "masked": ["m1"], "unmasked": ["u1", "u2"]})
    assert scored.chosen_examples(4) == ["m1", "u1", "n1", "n2"]
    assert scored.chosen_examples(3) == ["m1", "u1", "n1"]
    scored = ScoredTestSet(examples={"normal": ["n1", "n2", "n3"], "masked": [], "unmasked": []})
    assert scored.chosen_examples(2) == ["n1", "n2"], "without anomalies normal images fill the quota"


# 12 test images in split order, evaluated in batches of 4: the authors' evaluator sees 3 points, the first
# image of each batch (indices 0, 4, 8) labelled with its batch's max label (0, 1, 1).
LABELS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
SCORES = {
    # every anomaly above every normal (per-image AUROC 1), but normal image 4 opens an anomalous batch with
    # the lowest score: first-image points (0.1, 0), (0.05, 1), (0.9, 1) -> AUROC 1/2
    10: [0.1, 0.2, 0.3, 0.4, 0.05, 0.6, 0.7, 0.75, 0.9, 1.0, 1.1, 1.2],
    # normal image 4 now beats two anomalies (per-image AUROC 34/36), yet the points (0.1, 0), (0.8, 1),
    # (0.9, 1) are perfectly ordered -> AUROC 1
    20: [0.1, 0.2, 0.3, 0.4, 0.8, 0.6, 0.7, 0.75, 0.9, 1.0, 1.1, 1.2],
}
PER_IMAGE_AUROC = {10: 1.0, 20: 34 / 36}


def test_official_first_image_auroc_by_hand():
    assert official_first_image_auroc(LABELS, SCORES[10], batch_size=4) == 0.5
    assert official_first_image_auroc(LABELS, SCORES[20], batch_size=4) == 1.0
    # a trailing partial batch counts; 2/3 is rounded to 4 decimals as the authors' evaluator does
    labels, scores = [0, 0, 0, 0, 0, 0, 1, 1], [0.1, 0.0, 0.2, 0.0, 0.9, 0.0, 0.5, 0.0]
    assert official_first_image_auroc(labels, scores, batch_size=2) == 0.6667
    # batch size 1 is the per-image AUROC: 0.5 beats 5 of the 6 normals, 0.0 ties 3 of them -> 6.5/12
    assert official_first_image_auroc(labels, scores, batch_size=1) == round(6.5 / 12, 4)
    assert official_first_image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], batch_size=4) is None  # one point


def test_the_official_scorer_selects_another_epoch_than_per_image_and_both_are_recorded():
    per_epoch = {epoch: {"ts": {"pooled": {"image_AUROC": auroc, "image_AP": 0.5}, "per_class": {}}}
                 for epoch, auroc in PER_IMAGE_AUROC.items()}
    images = {epoch: {"paths": [f"{i}.png" for i in range(12)], "labels": LABELS, "scores": {"ts": scores}}
              for epoch, scores in SCORES.items()}
    selection = _Selection(per_epoch, images, final_epoch=20, final=ScoredTestSet(), missing=[])

    ours = selection.labelled("per_image", batch_size=4)["ts"]
    official = selection.labelled("official_first_image", batch_size=4)["ts"]
    assert (ours["best_of_test"]["epoch"], official["best_of_test"]["epoch"]) == (10, 20)
    assert official["best_of_test"]["selected_by"] == "official_first_image"
    assert official["best_of_test"]["selection_AUROC"] == 1.0
    # the reported metrics are the per-image ones of the selected epoch, whichever scorer selected it
    assert official["best_of_test"]["pooled"]["image_AUROC"] == PER_IMAGE_AUROC[20]
    assert ours["best_of_test_by"] == official["best_of_test_by"]
    assert ours["best_of_test_by"]["official_first_image"]["selection_AUROC"] == 1.0
    assert ours["best_of_test_by"]["per_image"]["selection_AUROC"] == 1.0
    assert ours["last"]["epoch"] == 20
    # with one batch per epoch the authors' evaluator has a single point: it never wins over a defined AUROC
    assert selection.labelled("official_first_image", batch_size=12)["ts"]["best_of_test"]["epoch"] == 10
