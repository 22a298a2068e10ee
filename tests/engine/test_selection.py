from pdd.engine.evaluate import ScoredTestSet, select_best_of_test


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
