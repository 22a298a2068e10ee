"""The replication gap: every reproduced number beside the published one, Δ, and a tolerance flag.

Written as LaTeX and Markdown (`replication_gap.{tex,md}`) from the same cells the tables show, so
the gap table can never disagree with Tables 1-5. The Markdown also puts the two `best_of_test`
selections side by side (pdd's per-image AUROC vs the authors' first-image-of-batch evaluator,
`pdd.engine.selection`) for every run whose metrics.json records both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pdd.reporting.results import Run
from pdd.reporting.tables import METRIC_LABELS, TABLES, BuiltTable, ReportSettings, render

GAP_STEM = "replication_gap"


@dataclass(frozen=True)
class GapRow:
    table: str
    row: str
    column: str
    metric: str
    paper: float  # percent
    ours: float  # percent, mean over seeds
    std: float | None
    within: bool

    @property
    def delta(self) -> float:
        return self.ours - self.paper


def gap_rows(tables: Sequence[BuiltTable], tolerance: float) -> list[GapRow]:
    """One row per reproduced cell that has a published counterpart; `tolerance` is a fraction (0.03 = 3 pp)."""
    rows = []
    for table in tables:
        for cell in table.cells:
            if cell.paper is None:
                continue
            std = None if cell.measured.std is None else 100.0 * cell.measured.std
            within = abs(cell.ours - cell.paper) <= 100.0 * tolerance + 1e-9
            rows.append(
                GapRow(table.name, cell.row, cell.column, METRIC_LABELS[cell.metric], cell.paper, cell.ours, std, within)
            )
    return rows


@dataclass(frozen=True)
class SelectionRow:
    """One run and scoring: the epoch each selection scorer picks, and pdd's per-image AUROC there (%)."""

    run: str
    scoring: str
    per_image_epoch: int
    per_image_auroc: float | None
    official_epoch: int
    official_criterion: float | None  # the authors' first-image AUROC that selected it
    official_auroc: float | None  # pdd's per-image AUROC of that epoch

    @property
    def differ(self) -> bool:
        return self.per_image_epoch != self.official_epoch


def selection_rows(runs: Sequence[Run]) -> list[SelectionRow]:
    """Both `best_of_test` selections of every run whose metrics.json records them (`best_of_test_by`)."""

    def percent(value: float | None) -> float | None:
        return None if value is None else 100.0 * value

    rows = []
    for run in runs:
        for scoring, results in sorted(run.data["metrics"].items()):
            by = results.get("best_of_test_by")
            if not by:
                continue
            ours, official = by["per_image"], by["official_first_image"]
            rows.append(SelectionRow(
                run.key.id, scoring, ours["epoch"],
                percent(ours["pooled"]["image_AUROC"]), official["epoch"], percent(official["selection_AUROC"]),
                percent(official["pooled"]["image_AUROC"])))
    return rows


def render_gap(tables: Sequence[BuiltTable], results_root: Path, settings: ReportSettings) -> dict[str, str]:
    """{'tex': ..., 'md': ...} for the gap table of the paper's tables among `tables`.

    A results table of the user's own has no published numbers, so it is left out entirely: neither its
    name nor its runs appear in the gap table's text or provenance.
    """
    tables = [table for table in tables if table.name in TABLES]
    rows = gap_rows(tables, settings.gap_tolerance)
    runs: dict[Path, Run] = {run.path: run for table in tables for run in table.runs}
    context = dict(
        rows=rows,
        tolerance_pp=100.0 * settings.gap_tolerance,
        n_within=sum(row.within for row in rows),
        tables=[table.name for table in tables],
    )
    ordered_runs = sorted(runs.values(), key=lambda run: run.path)
    context["selections"] = selection_rows(ordered_runs)
    return {
        ext: render(f"{GAP_STEM}.{ext}.j2", None, results_root, settings, runs=ordered_runs, **context)
        for ext in ("tex", "md")
    }
