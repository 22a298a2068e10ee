"""A claim that is false on constructed paired scores comes out contradicted, a true one supported, a tie not
significant, by DeLong's paired test and by the paired bootstrap alike; the declared claims quote the paper."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from pdd.reporting.claims import Claim, MissingArm, PaperArm, RunArm, judge_claims, paper_claims, parse_claims
from pdd.reporting.resampling import AUROC
from pdd.reporting.uncertainty import CurveMetric, Evidence, ImageBootstrap, LabelledImages, UncertaintySettings, delong


def _constructed():
    """Three models scored on the same 40 + 154 images: `strong` (AUROC ~0.95), `twin` (the same population
    AUROC, its own noise) and `weak` (~0.80), sharing a per-image difficulty as models on one test set do."""
    rng = np.random.default_rng(7)
    labels = np.r_[np.zeros(40, dtype=int), np.ones(154, dtype=int)]
    difficulty = rng.normal(size=labels.size)
    scores = {name: 0.8 * difficulty + 0.6 * rng.normal(size=labels.size) + shift * labels
              for name, shift in (("strong", 2.33), ("twin", 2.33), ("weak", 1.19))}
    return labels, scores


def _claim(a: str, relation: str, b: str, margin: float = 0.0) -> Claim:
    return Claim("constructed", f"{a} {relation} {b}", "test", AUROC, RunArm("constructed", a), relation,
                 RunArm("constructed", b), margin)


CLAIMS = [
    (_claim("strong", "greater", "weak"), "supported"),
    (_claim("weak", "greater", "strong"), "contradicted"),
    (_claim("strong", "less", "weak"), "contradicted"),
    (_claim("strong", "greater", "twin"), "not significant"),
    (_claim("strong", "within", "twin", margin=0.05), "supported"),
    (_claim("strong", "within", "weak", margin=0.02), "contradicted"),
]


def _delong_evidence(labels, scores):
    names = list(scores)
    auroc, covariance = delong(labels, np.stack([scores[name] for name in names]))

    def evidence(claim):
        contrast = np.zeros(len(names))
        contrast[names.index(claim.a.variant)] += 1
        contrast[names.index(claim.b.variant)] -= 1
        return Evidence(float(contrast @ auroc), se=float(np.sqrt(contrast @ covariance @ contrast)))

    return evidence


def _bootstrap_evidence(labels, scores):
    images = LabelledImages("constructed", tuple(map(str, range(labels.size))), labels, np.array([""] * labels.size))
    bootstrap = ImageBootstrap(images, UncertaintySettings(resamples=2000))
    for name, values in scores.items():
        bootstrap.add_curve(name, values)
    result = bootstrap.run([CurveMetric(name, AUROC) for name in scores], method="percentile")
    index = {name: i for i, name in enumerate(scores)}

    def evidence(claim):
        a, b = index[claim.a.variant], index[claim.b.variant]
        return Evidence(float(result.estimates[a] - result.estimates[b]), draws=result.draws[a] - result.draws[b])

    return evidence


@pytest.mark.parametrize("evidence_of", [_delong_evidence, _bootstrap_evidence], ids=["DeLong", "bootstrap"])
def test_true_claims_are_supported_false_ones_contradicted_ties_not_significant(evidence_of):
    labels, scores = _constructed()
    results = judge_claims([claim for claim, _ in CLAIMS], evidence_of(labels, scores), level=0.95)
    assert [result.verdict for result in results] == [expected for _, expected in CLAIMS]
    strong_over_weak = results[0]
    assert strong_over_weak.interval.low > 0 and strong_over_weak.p_for < 0.025


def test_holm_correction_can_turn_a_verdict():
    """Alone, p = 0.02 supports a claim; beside a second claim of p = 0.3 in its family, Holm doubles it."""
    claims = [_claim("x", "greater", "y"), _claim("u", "greater", "v")]
    p = {"x": 0.02, "u": 0.3}
    evidence = {name: Evidence(0.1, se=0.1 / float(stats.norm.isf(value))) for name, value in p.items()}
    alone = judge_claims(claims[:1], lambda claim: evidence[claim.a.variant], 0.95)
    together = judge_claims(claims, lambda claim: evidence[claim.a.variant], 0.95)
    assert alone[0].verdict == "supported" and together[0].verdict == "not significant"
    assert together[0].p_for == pytest.approx(0.04)


def test_a_claim_without_its_runs_is_reported_not_run_and_left_out_of_holm():
    claims = [_claim("x", "greater", "y"), _claim("missing", "greater", "y")]

    def evidence(claim):
        if claim.a.variant == "missing":
            raise MissingArm("no results for constructed/missing")
        return Evidence(0.1, se=0.1 / 2.2)

    results = judge_claims(claims, evidence, 0.95)
    assert [r.verdict for r in results] == ["supported", "not run"] and "missing" in results[1].missing


def test_declared_claims_parse_and_expand_paper_columns():
    claims = paper_claims()
    table1 = [claim for claim in claims if claim.family == "table1"]
    assert len(table1) == 3 * 6 + 1  # PDD over each of six baselines on three datasets; CheXpert within SimSID
    assert all(isinstance(claim.b, PaperArm) for claim in table1)
    assert {claim.family for claim in claims} >= {"table1", "table2", "table3", "table4", "table5"}
    with pytest.raises(Exception, match="relation"):
        parse_claims({"x": [{"says": "", "where": "", "metric": AUROC, "relation": "bigger",
                             "a": {"dataset": "d", "variant": "v"}, "b": {"dataset": "d", "variant": "w"}}]})
    # PDD against RD4AD's re-run on every Table 1 dataset and Uni-Medical class, each with the paper's margin
    rd4ad = [claim for claim in claims if claim.family == "rd4ad_rerun"]
    assert [(claim.a.variant, claim.b.variant, claim.paper_margin.b) for claim in rd4ad] == [("full", "rd4ad",
                                                                                             "RD4AD")] * 8
    assert rd4ad[0].paper_margin.value(AUROC) == pytest.approx(97.5 - 74.3)
    with pytest.raises(Exception, match="paper_margin compares two of our runs"):
        parse_claims({"x": [{"says": "", "where": "", "metric": AUROC, "relation": "greater",
                             "a": {"dataset": "d", "variant": "v"}, "b": {"paper": {"table": "t", "row": "r",
                                                                                     "column": "c"}},
                             "paper_margin": {"table": "t", "row": "r", "a": "PDD", "b": "c"}}]})


def test_every_claim_quotes_the_paper(shared_reference):
    text = " ".join((shared_reference / "paper.txt").read_text(encoding="utf-8").split())
    missing = sorted({claim.says for claim in paper_claims() if " ".join(claim.says.split()) not in text})
    assert not missing, missing
    assert re.search(r"not overly sensitive", text)
