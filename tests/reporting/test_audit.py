"""The paper checked against itself from the declared data: its real inconsistencies are found, a planted one
in a test copy of the transcription is found, and every quote is in the paper."""

from __future__ import annotations

import copy

import pytest

from pdd.reporting.audit import audit, audit_declarations
from pdd.reporting.published import published_tables


def _inconsistent(findings):
    return {(finding.kind, finding.where, finding.stated) for finding in findings if not finding.consistent}


def test_the_papers_own_inconsistencies_are_found():
    found = _inconsistent(audit())
    # the abstract's BrainMRI and ZhangLab gains are not Table 1's (8.5 and 2.9 percentage points)
    assert ("restated", "Abstract", "5.1") in found and ("restated", "Abstract", "8.5") in found
    # Sec. 4.2 states the same gains correctly
    assert not any(where == "Sec. 4.2" for _, where, _ in found)
    # Table 2's mean row of UniAD is not the mean of its class rows; RD4AD's and UniAD's liver rows are identical
    assert {stated for kind, where, stated in found if kind == "mean row" and "UniAD" in where} == {"78.5", "75.2",
                                                                                                  "76.6"}
    assert any(kind == "identical rows" and where == "Table 2 liver" for kind, where, _ in found)
    # Table 3's and Table 4's Ours rows agree with Table 1 at the precision printed; Table 5's tau setting does not
    same = {finding.what: finding.consistent for finding in audit() if finding.kind == "same number"}
    assert same["ZhangLab, the full model's AUROC (Table 3's Ours row and Table 1)"]
    assert same["BrainMRI, the full model's AUROC (Table 4's Ours row and Table 1)"]
    assert not same["ZhangLab, the AUROC at the paper's tau setting (Table 5) and in Table 1"]
    assert len(found) == 8


@pytest.mark.parametrize("plant", ["mean row", "restated cell", "same number", "copied row"])
def test_a_planted_inconsistency_is_found(plant):
    tables = copy.deepcopy(published_tables())
    declarations = copy.deepcopy(audit_declarations())
    before = _inconsistent(audit(tables, declarations))
    if plant == "mean row":
        tables["table2"]["rows"]["mean"]["DiAD"][2] = 78.9  # was 77.8, the mean of its rows
    elif plant == "restated cell":
        tables["table3"]["rows"]["M4"]["PDD"][0] = 93.9  # the text says "improves AUROC to 92.9%"
    elif plant == "same number":
        tables["table4"]["rows"]["Ours"]["PDD"][0] = 96.57  # Table 1 prints 96.7
    else:
        tables["table2"]["rows"]["brain"]["SimpleNet"] = list(tables["table2"]["rows"]["brain"]["DeSTSeg"])
    new = _inconsistent(audit(tables, declarations)) - before
    assert new, plant
    expected_kind = {"mean row": "mean row", "restated cell": "restated", "same number": "same number",
                     "copied row": "identical rows"}[plant]
    assert expected_kind in {kind for kind, _, _ in new}  # a planted cell may also break what the text restates


def test_every_quote_is_in_the_paper_and_states_its_number(shared_reference):
    text = " ".join((shared_reference / "paper.txt").read_text(encoding="utf-8").split())
    for entry in audit_declarations()["restated"]:
        quote = " ".join(entry["quote"].split())
        assert quote in text, quote
        assert entry["states"] in quote, (entry["states"], quote)
