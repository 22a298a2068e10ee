"""The paper against itself: every number it states more than once, compared at the precision it prints.

Driven by two transcriptions, never by special cases here: `published.yaml` (the tables) and `audit.yaml` (what
the text restates, which cells repeat another table, which rows are means). Each comparison allows exactly the
rounding the printed numbers carry: a stated number with d decimals stands for anything within half a unit of
its last digit, and a difference of two printed cells can be off by one unit of theirs. Identical rows for
different methods (a copied row) are looked for in every table.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from pdd.reporting.published import flatten, published_tables

Cell = tuple[str, str, str, str]  # table, row, column, metric


@dataclass(frozen=True)
class Finding:
    """One comparison: what the paper says where, what its tables give, and whether the two agree."""

    kind: str  # restated | same number | mean row | identical rows
    where: str
    what: str
    stated: str
    derived: str
    consistent: bool
    note: str = ""


@functools.lru_cache(maxsize=1)
def audit_declarations() -> dict[str, Any]:
    text = resources.files("pdd.reporting").joinpath("audit.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _cell(spec: dict[str, str]) -> Cell:
    return spec["table"], spec["row"], spec["column"], spec["metric"]


def _label(cell: Cell) -> str:
    return f"{cell[0].replace('table', 'Table ')} {cell[1]} / {cell[2]} / {cell[3].removeprefix('image_')}"


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


class _Paper:
    """The transcribed tables as values with the precision each table prints."""

    def __init__(self, tables: dict[str, Any]):
        self.tables = tables
        self.values = {(v.table, v.row, v.column, v.metric): v.value for v in flatten(tables)}

    def value(self, cell: Cell) -> float:
        try:
            return self.values[cell]
        except KeyError:
            raise KeyError(f"audit.yaml names {cell}, which published.yaml does not have") from None

    def unit(self, table: str) -> float:
        return 10.0 ** -self.tables[table]["digits"]

    def text(self, cell: Cell) -> str:
        return f"{self.value(cell):.{self.tables[cell[0]]['digits']}f}"

    def best_other(self, cell: Cell) -> Cell:
        table, row, column, metric = cell
        others = [key for key in self.values if key[0] == table and key[1] == row and key[3] == metric
                  and key[2] != column]
        return max(others, key=self.values.__getitem__)


def _restated(paper: _Paper, entry: dict[str, Any]) -> Finding:
    (kind, spec), = entry["is"].items()
    stated = float(entry["states"])
    allowance = 0.5 * 10.0 ** -_decimals(entry["states"])
    if kind == "value":
        cell = _cell(spec)
        derived, what, allowance = paper.value(cell), _label(cell), allowance + 0.5 * paper.unit(cell[0])
        text = paper.text(cell)
    else:
        first, second = (_cell(spec), paper.best_other(_cell(spec))) if kind == "margin_over_best_other" else (
            _cell(spec[0]), _cell(spec[1]))
        derived = paper.value(first) - paper.value(second)
        allowance += 0.5 * paper.unit(first[0]) + 0.5 * paper.unit(second[0])
        what = f"{_label(first)} − {_label(second)}"
        text = f"{paper.text(first)} − {paper.text(second)} = {derived:.{paper.tables[first[0]]['digits']}f}"
    return Finding("restated", entry["where"], what, entry["states"], text,
                   abs(derived - stated) <= allowance + 1e-9, f"“{entry['quote']}”")


def _same_number(paper: _Paper, entry: dict[str, Any]) -> Finding:
    first, second = (_cell(spec) for spec in entry["cells"])
    allowance = 0.5 * paper.unit(first[0]) + 0.5 * paper.unit(second[0])
    consistent = abs(paper.value(first) - paper.value(second)) <= allowance + 1e-9
    return Finding("same number", f"{_label(first)} vs {_label(second)}", entry["what"], paper.text(first),
                   paper.text(second), consistent)


def _mean_rows(paper: _Paper, entry: dict[str, Any]) -> list[Finding]:
    table, row, parts = entry["table"], entry["row"], entry["of"]
    findings = []
    for (_, _, column, metric) in sorted(key for key in paper.values if key[0] == table and key[1] == row):
        values = [paper.value((table, part, column, metric)) for part in parts]
        mean = sum(values) / len(values)
        cell = (table, row, column, metric)
        # the mean of rounded rows is within half a unit of the true mean, and so is the printed mean row
        consistent = abs(mean - paper.value(cell)) <= paper.unit(table) + 1e-9
        findings.append(Finding("mean row", _label(cell), f"mean of {', '.join(parts)}", paper.text(cell),
                                f"{mean:.{paper.tables[table]['digits'] + 1}f}", consistent))
    return findings


def _identical_rows(paper: _Paper) -> list[Finding]:
    """Two methods with the same numbers on a row (all of its metrics, at least two) or over a whole table."""
    findings = []
    for table in paper.tables:
        keys = [key for key in paper.values if key[0] == table]
        methods = list(dict.fromkeys(key[2] for key in keys))
        rows = list(dict.fromkeys(key[1] for key in keys))
        vectors: dict[tuple[str, str], tuple[float, ...]] = {}
        for method in methods:
            for row in [*rows, None]:
                vector = tuple(paper.values[key] for key in keys if key[2] == method and (row is None or key[1] == row))
                if len(vector) >= 2:
                    vectors[(method, row or "all rows")] = vector
        for (a, row_a), (b, row_b) in itertools.combinations(vectors, 2):
            if a != b and row_a == row_b and vectors[(a, row_a)] == vectors[(b, row_b)]:
                digits = paper.tables[table]["digits"]
                numbers = " / ".join(f"{value:.{digits}f}" for value in vectors[(a, row_a)])
                findings.append(Finding("identical rows", f"{table.replace('table', 'Table ')} {row_a}",
                                        f"{a} and {b}", numbers, numbers, False,
                                        "two methods with identical numbers: a copied row?"))
    return findings


def audit(tables: dict[str, Any] | None = None, declarations: dict[str, Any] | None = None) -> list[Finding]:
    """Every comparison of the paper with itself (the transcriptions by default; tests pass altered copies)."""
    paper = _Paper(tables if tables is not None else published_tables())
    declarations = declarations if declarations is not None else audit_declarations()
    findings = [_restated(paper, entry) for entry in declarations.get("restated", [])]
    findings += [_same_number(paper, entry) for entry in declarations.get("same_number", [])]
    for entry in declarations.get("mean_rows", []):
        findings += _mean_rows(paper, entry)
    return findings + _identical_rows(paper)
