"""The paper's comparative claims (`claims.yaml`), and their verdicts: supported, not significant, contradicted.

A claim says that arm `a` stands in a relation to arm `b` on a metric. An arm is one of our runs (dataset,
variant, scoring, selection, fidelity; optionally one class or the class mean) or a number the paper
publishes. The caller turns each claim's two arms into `Evidence` about the difference Δ = a − b (paired on
the same test images when both are runs: `pdd.reporting.report`); here each relation becomes two one-sided
p-values, one for the claim and one against it, Holm-corrected within the claim's family (a table):

* `greater` (a > b): for = P(Δ ≤ 0), against = P(Δ ≥ 0); `less` the mirror image;
* `within` (|Δ| ≤ margin): for = max(P(Δ ≤ −m), P(Δ ≥ m)) (two one-sided tests), against =
  2·min(P(Δ ≥ −m), P(Δ ≤ m)) (significantly outside the margin on one side).

Each is tested at (1 − level)/2, so a `greater` claim is *supported* exactly when the Holm-adjusted central
`level` interval of Δ lies above 0, *contradicted* when it lies below, and *not significant* otherwise.
The format is general on purpose: another run (a re-run baseline such as RD4AD) is just another arm. A claim
between two runs may name the margin the paper publishes for it (`paper_margin`: PDD − RD4AD in one of its
tables), which the report sets beside ours and its interval (`MarginComparison`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Literal

import yaml

from pdd.errors import PDDError
from pdd.reporting.published import published
from pdd.reporting.uncertainty import Evidence, Interval, holm

Relation = Literal["greater", "less", "within"]
Verdict = Literal["supported", "not significant", "contradicted", "not run"]
RELATION_SYMBOLS = {"greater": ">", "less": "<", "within": "≈"}
MEAN_CLASS = "mean"  # an arm's `class: mean`: the mean over the dataset's classes (Table 2's mean row)


@dataclass(frozen=True)
class RunArm:
    """One of our runs as a claim's arm; `selection`/`fidelity` None: the report's (`reporting.selection`,
    `model.fidelity`); `cls` one class, `mean` for the mean over classes, None for every image."""

    dataset: str
    variant: str
    scoring: str = "ts"
    selection: str | None = None
    fidelity: str | None = None
    cls: str | None = None

    @property
    def label(self) -> str:
        scope = f" [{self.cls}]" if self.cls else ""
        return f"{self.dataset}/{self.variant} {self.scoring}{scope}"


@dataclass(frozen=True)
class PaperArm:
    """A number the paper publishes (percent in published.yaml), a constant for the test."""

    table: str
    row: str
    column: str

    @property
    def label(self) -> str:
        return f"paper {self.table.replace('table', 'T')} {self.row}/{self.column}"


@dataclass(frozen=True)
class PaperMargin:
    """The difference of two methods' numbers in one row of a paper table (`a` − `b`, e.g. PDD − RD4AD)."""

    table: str
    row: str
    a: str
    b: str

    def value(self, metric: str) -> float:
        """The published margin in percentage points."""
        return published(self.table, self.row, self.a, metric) - published(self.table, self.row, self.b, metric)

    @property
    def label(self) -> str:
        return f"paper {self.table.replace('table', 'T')} {self.row}: {self.a} − {self.b}"


@dataclass(frozen=True)
class Claim:
    family: str
    says: str
    where: str
    metric: str
    a: RunArm
    relation: Relation
    b: RunArm | PaperArm
    margin: float = 0.0
    paper_margin: PaperMargin | None = None  # the margin the paper publishes for a − b (two runs)

    @property
    def statement(self) -> str:
        margin = f" ± {100 * self.margin:g} pp" if self.relation == "within" else ""
        return f"{self.a.label} {RELATION_SYMBOLS[self.relation]} {self.b.label}{margin}"


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: Verdict
    estimate: float | None = None  # Δ = a − b (fraction)
    interval: Interval | None = None  # of Δ, at the report's level, not adjusted
    p_for: float | None = None  # Holm-adjusted one-sided p-values
    p_against: float | None = None
    method: str = ""
    missing: str = ""  # why a claim could not be tested (its runs are not in the results)


def _arm(spec: dict[str, Any]) -> RunArm:
    return RunArm(spec["dataset"], spec["variant"], spec.get("scoring", "ts"), spec.get("selection"),
                  spec.get("fidelity"), spec.get("class"))


def parse_claims(document: dict[str, list[dict[str, Any]]]) -> list[Claim]:
    """Claims of a claims.yaml document, a list of paper columns expanded into one claim each."""
    claims = []
    for family, entries in document.items():
        for entry in entries:
            try:
                base = dict(family=family, says=entry["says"], where=entry["where"], metric=entry["metric"],
                            a=_arm(entry["a"]), relation=entry["relation"], margin=float(entry.get("margin", 0.0)))
                if base["relation"] not in RELATION_SYMBOLS:
                    raise ValueError(f"relation {base['relation']!r} is not one of {sorted(RELATION_SYMBOLS)}")
                if "paper_margin" in entry:
                    if "paper" in entry["b"]:
                        raise ValueError("paper_margin compares two of our runs with the paper's margin; b is a "
                                         "published number")
                    base["paper_margin"] = PaperMargin(**entry["paper_margin"])
                if "paper" in entry["b"]:
                    paper = entry["b"]["paper"]
                    columns = paper["column"] if isinstance(paper["column"], list) else [paper["column"]]
                    claims += [Claim(**base, b=PaperArm(paper["table"], paper["row"], column)) for column in columns]
                else:
                    claims.append(Claim(**base, b=_arm(entry["b"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise PDDError(f"claims.yaml, family {family}: bad claim {entry!r} ({exc}); see the format at the "
                               "top of pdd/reporting/claims.yaml") from None
    return claims


@functools.lru_cache(maxsize=1)
def paper_claims() -> tuple[Claim, ...]:
    text = resources.files("pdd.reporting").joinpath("claims.yaml").read_text(encoding="utf-8")
    return tuple(parse_claims(yaml.safe_load(text)))


def one_sided_p_values(evidence: Evidence, relation: Relation, margin: float) -> tuple[float, float]:
    """(p for the claim, p against it), unadjusted; see the module docstring."""
    if relation == "greater":
        return evidence.cdf(0.0), evidence.survival(0.0)
    if relation == "less":
        return evidence.survival(0.0), evidence.cdf(0.0)
    return (max(evidence.cdf(-margin), evidence.survival(margin)),
            min(1.0, 2 * min(evidence.survival(-margin), evidence.cdf(margin))))


@dataclass
class _Tested:
    claim: Claim
    evidence: Evidence | None
    missing: str = ""
    p: tuple[float, float] = field(default=(1.0, 1.0))


def judge_claims(claims: list[Claim], evidence_of: Callable[[Claim], Evidence], level: float) -> list[ClaimResult]:
    """The verdict of every claim: `evidence_of` gives the evidence about Δ (or raises `MissingArm`)."""
    tested = []
    for claim in claims:
        try:
            evidence = evidence_of(claim)
        except MissingArm as missing:
            tested.append(_Tested(claim, None, str(missing)))
            continue
        tested.append(_Tested(claim, evidence, p=one_sided_p_values(evidence, claim.relation, claim.margin)))
    threshold = (1 - level) / 2
    adjusted: dict[int, tuple[float, float]] = {}
    for family in dict.fromkeys(claim.family for claim in claims):
        members = [i for i, item in enumerate(tested) if item.claim.family == family and item.evidence is not None]
        for_p = holm([tested[i].p[0] for i in members])
        against_p = holm([tested[i].p[1] for i in members])
        adjusted.update({i: (f, a) for i, f, a in zip(members, for_p, against_p)})
    results = []
    for i, item in enumerate(tested):
        if item.evidence is None:
            results.append(ClaimResult(item.claim, "not run", missing=item.missing))
            continue
        p_for, p_against = adjusted[i]
        verdict: Verdict = ("supported" if p_for < threshold else "contradicted" if p_against < threshold
                            else "not significant")
        results.append(ClaimResult(item.claim, verdict, item.evidence.estimate, item.evidence.interval(level),
                                   p_for, p_against, item.evidence.method))
    return results


@dataclass(frozen=True)
class MarginComparison:
    """A claim's margin as the paper publishes it beside ours (percentage points): *reproduced* when the paper's
    lies inside our interval of a − b (at the report's level, not Holm-adjusted: the question is the size of the
    margin, not whether it is positive), *smaller* / *larger* when our whole interval lies below / above it."""

    result: ClaimResult
    paper: float  # pp

    @property
    def verdict(self) -> str:
        low, high = 100 * self.result.interval.low, 100 * self.result.interval.high
        return "reproduced" if low <= self.paper + 1e-9 and self.paper <= high + 1e-9 else (
            "smaller" if high < self.paper else "larger")


def margin_comparisons(results: list[ClaimResult]) -> list[MarginComparison]:
    """The comparison of every tested claim that names a published margin."""
    return [MarginComparison(result, result.claim.paper_margin.value(result.claim.metric)) for result in results
            if result.claim.paper_margin is not None and result.interval is not None]


class MissingArm(PDDError):
    """A claim's run is not among the results (its table is not in the plan, or it was not run yet)."""
