"""Tables 1-5 of the paper, rebuilt from `metrics.json` files and rendered with Jinja2 to LaTeX.

Each table shows every reproduced number beside the number the paper published. A table is first
built as plain data (cells, the paper values they replicate, and the metrics.json keys they come
from), then rendered; the replication report (`pdd.reporting.report`) reuses the same cells. Any other
table of params.plan (a dataset of the user's own) is a results table: the same numbers, ranked,
with no paper beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from pdd.errors import ConfigError
from pdd.reporting.arms import Arm, components, rerun_arms, table_arms
from pdd.reporting.latex import format_measured, format_value, ranked_rows, styled_cells, template_environment
from pdd.reporting.published import OURS, methods, published, tau_column
from pdd.reporting.results import Measured, Query, ResultsIndex, Run, metric_key

DEMO_BANNER = "DEMO — synthetic data, random-init teachers: not the paper's numbers"
TABLES = ("table1", "table2", "table3", "table4", "table5")  # the paper's; any other plan table is a results table
RESULTS_TEMPLATE = "results.tex.j2"
SELECTIONS = {
    "last": "the last epoch's checkpoint",
    "best_of_test": "the checkpoint with the best test AUROC, as the authors selected",
}
DATASET_LABELS = {
    "headct": "HeadCT",
    "zhanglab": "ZhangLab",
    "brainmri": "BrainMRI",
    "chexpert": "CheXpert",
    "unimedical": "Uni-Medical",
}
METRIC_LABELS = {"image_AUROC": "AUROC", "image_AP": "AP", "image_F1max": "F1-max",
                 "image_sens_at_spec95": "Sens@95%Spec", "image_spec_at_sens95": "Spec@95%Sens"}
IMAGE_METRICS = ("image_AUROC", "image_AP", "image_F1max")
MEAN_ROW = "mean"  # Table 2's row of the mean over its class rows


@dataclass(frozen=True)
class Table5Arm:
    dataset: str
    variant: str
    tau_low: float
    tau_high: float


@dataclass(frozen=True)
class ResultsTable:
    """A plan table that is not one of the paper's: its distinct (dataset, variant) rows in plan order."""

    name: str
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ReportSettings:
    """What the tables need from params: which runs to read and how to present them."""

    fidelity: str = "code"
    selection: str = "best_of_test"
    seeds: tuple[int, ...] = (0,)
    gap_tolerance: float = 0.03  # |ours - paper| as a fraction in [0, 1]
    table5_arms: tuple[Table5Arm, ...] = ()
    results_tables: tuple[ResultsTable, ...] = ()
    # the baseline re-runs the plan has (`pdd.reporting.arms.rerun_arms`): (table, dataset, variant)
    reruns: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ConfigError(f"reporting.selection must be one of {sorted(SELECTIONS)}, got {self.selection!r}")

    def results_table(self, name: str) -> ResultsTable | None:
        return next((table for table in self.results_tables if table.name == name), None)

    def planned(self, table: str, arm: Arm) -> bool:
        """Whether the plan has this baseline re-run (a re-run it leaves out is printed as --)."""
        return (table, arm.dataset, arm.variant) in self.reruns

    @classmethod
    def from_params(cls, params: Any) -> ReportSettings:
        """Read the reporting knobs, the Table 5 arms (plan.table5, with each variant's resolved τ) and the
        rows of every other plan table, so that no builder reads params itself."""
        from pdd.models.options import PDDOptions

        fidelity = params.model.fidelity
        arms = []
        for entry in params.plan.get("table5", []):
            for variant in entry.variants:
                options = PDDOptions.resolve(params.variant(variant).arch, fidelity, **params.model_options(variant))
                arms.extend(Table5Arm(d, variant, options.tau_low, options.tau_high) for d in entry.datasets)
        reruns = []
        for table in TABLES:
            planned = {(run.dataset, run.variant) for run in params.plan_runs(table)
                       if run.fidelity == fidelity} if table in params.plan else set()
            reruns += [(table, arm.dataset, arm.variant) for arm in rerun_arms(table)
                       if (arm.dataset, arm.variant) in planned]
        return cls(
            fidelity=fidelity,
            selection=params.reporting.selection,
            reruns=tuple(dict.fromkeys(reruns)),
            seeds=tuple(params.seeds),
            gap_tolerance=params.reporting.gap_tolerance,
            table5_arms=tuple(sorted(arms, key=lambda arm: _dataset_order(arms, arm.dataset))),
            results_tables=tuple(
                ResultsTable(name, tuple(dict.fromkeys(
                    (dataset, variant) for entry in entries for dataset in entry.datasets for variant in entry.variants
                )))
                for name, entries in params.plan.items()
                if name not in TABLES
            ),
        )


def _dataset_order(arms: Sequence[Table5Arm], dataset: str) -> int:
    """Keep the plan's order but group arms of one dataset together (stable sort key)."""
    return [arm.dataset for arm in arms].index(dataset)


@dataclass(frozen=True)
class ReproducedCell:
    """One reproduced number and, when the paper has it, the published number it replicates (percent)."""

    table: str
    row: str
    column: str
    metric: str
    measured: Measured
    paper: float | None

    @property
    def ours(self) -> float:
        return 100.0 * self.measured.mean


@dataclass
class BuiltTable:
    """A table as data: the template context, every reproduced cell and the runs it read."""

    name: str
    context: dict[str, Any]
    cells: list[ReproducedCell] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    @property
    def demo(self) -> bool:
        return any(run.demo for run in self.runs)


class _CellReader:
    """Measures cells of one table from the results index and records what it read."""

    def __init__(self, table: str, index: ResultsIndex, settings: ReportSettings):
        self.table, self.index, self.settings = table, index, settings
        self.cells: list[ReproducedCell] = []
        self._runs: dict[Path, Run] = {}

    def measure(
        self,
        dataset: str,
        variant: str,
        metric: str,
        scoring: str = "ts",
        cls: str | None = None,
        mean_over_classes: Sequence[str] = (),
    ) -> Measured:
        s = self.settings
        measured = self.index.measure(
            dataset,
            variant,
            s.fidelity,
            s.seeds,
            metric_key(scoring, s.selection, metric, cls),
            [metric_key(scoring, s.selection, metric, c) for c in mean_over_classes],
        )
        for source in measured.sources:
            self._runs.setdefault(source.path, self.index.run_at(source.path))
        classes = tuple(mean_over_classes) or ((cls,) if cls is not None else ())
        return replace(measured, query=Query(dataset, variant, s.fidelity, scoring, s.selection, metric, classes,
                                             tuple(s.seeds)))

    def record(self, row: str, column: str, metric: str, measured: Measured, paper: float | None) -> None:
        self.cells.append(ReproducedCell(self.table, row, column, metric, measured, paper))

    def built(self, context: dict[str, Any]) -> BuiltTable:
        return BuiltTable(self.table, context, self.cells, sorted(self._runs.values(), key=lambda r: r.path))


# ---------------------------------------------------------------------------------------------------------------
# The five tables and the results table of any other plan table. Each returns plain data; the templates only
# lay it out.


def rerun_label(method: str) -> str:
    """The column of a baseline re-run under pdd's protocol, beside its published one."""
    return f"{method} (re-run)"


def _baseline_headers(table: str) -> list[str]:
    """The baseline columns in the paper's order, each re-run baseline as its published and its re-run column."""
    reruns = {arm.column for arm in rerun_arms(table)}
    headers = []
    for method in (m for m in methods(table) if m != OURS):
        headers += [f"{method} (paper)", rerun_label(method)] if method in reruns else [method]
    return headers


def _comparison_row(reader: _CellReader, arm: Arm, metric: str, digits: int, classes: Sequence[str] = (),
                    ) -> tuple[list[dict[str, Any]], str]:
    """One metric of one row of a comparison table (1 or 2): the published baselines, each planned re-run of one
    beside its published value ("--" where the plan has none), ours; ranked together. Returns the cells and the
    paper's PDD value. `classes`: the mean over these classes (Table 2's mean row); else `arm.row`'s class if
    the table has classes, else every image."""
    table = reader.table
    reruns = {rerun.column: rerun for rerun in rerun_arms(table) if rerun.row == arm.row}
    cls = None if classes or table == "table1" else arm.row

    def measure(run: Arm) -> Measured:
        return reader.measure(run.dataset, run.variant, metric, run.scoring, cls=cls, mean_over_classes=classes)

    label = DATASET_LABELS[arm.dataset] if table == "table1" else arm.row
    ours = measure(arm)  # PDD's run first: a missing run of the table's own is the one named
    paper = published(table, arm.row, arm.column, metric)
    reader.record(label, OURS, metric, ours, paper)
    texts: list[str] = []
    values: list[float | None] = []
    for method in (m for m in methods(table) if m != OURS):
        published_value = published(table, arm.row, method, metric)
        texts.append(format_value(published_value, digits))
        values.append(published_value)
        if method in reruns:
            rerun = reruns[method]
            if reader.settings.planned(table, rerun):
                measured = measure(rerun)
                reader.record(label, rerun_label(method), metric, measured, published_value)
                texts.append(format_measured(measured, digits))
                values.append(100.0 * measured.mean)
            else:
                texts.append("--")
                values.append(None)
    texts.append(format_measured(ours, digits))
    values.append(100.0 * ours.mean)
    return styled_cells(texts, values, digits), format_value(paper, digits)


def _rerun_context(table: str, settings: ReportSettings) -> dict[str, Any]:
    """What the caption says about a table's baseline re-runs: which it has, and which the plan left out."""
    arms = rerun_arms(table)
    return {"reruns": sorted({arm.column for arm in arms if settings.planned(table, arm)}),
            "reruns_missing": sorted({arm.column for arm in arms if not settings.planned(table, arm)}),
            "rerun_variants": sorted({arm.variant for arm in arms})}


def build_table1(reader: _CellReader) -> BuiltTable:
    """AUROC of the full model on four datasets beside the six published baselines and RD4AD's re-run."""
    digits, metric = 1, "image_AUROC"
    body = []
    for arm in table_arms("table1"):
        cells, paper = _comparison_row(reader, arm, metric, digits)
        body.append({"label": DATASET_LABELS[arm.dataset], "cells": cells, "paper": paper})
    return reader.built({"baselines": _baseline_headers("table1"), "rows": body,
                         **_rerun_context("table1", reader.settings)})


def build_table2(reader: _CellReader) -> BuiltTable:
    """Uni-Medical per class and mean: AUROC / AP / F1-max, six baselines and RD4AD's re-run, ours beside the
    paper."""
    digits = 1
    arms = table_arms("table2")
    classes = [arm.row for arm in arms if arm.row != MEAN_ROW]
    body = []
    for arm in arms:
        per_metric = [_comparison_row(reader, arm, metric, digits, classes if arm.row == MEAN_ROW else ())
                      for metric in IMAGE_METRICS]
        # regroup from metric-major to method-major: one "AUROC/AP/F1" triple per method
        columns = len(per_metric[0][0])
        methods_cells = [[cells[i] for cells, _ in per_metric] for i in range(columns)]
        body.append(
            {
                "label": "Mean" if arm.row == MEAN_ROW else arm.row,
                "baselines": methods_cells[:-1],
                "ours": methods_cells[-1],
                "paper": [paper for _, paper in per_metric],
            }
        )
    return reader.built({"baselines": _baseline_headers("table2"), "rows": body,
                         **_rerun_context("table2", reader.settings)})


def _ablation_rows(reader: _CellReader, table: str, digits: int) -> BuiltTable:
    """One row per arm (a run and a scoring) with the paper's check marks, columns of (ours, paper) per
    metric; best/second ranked within a column. Every arm of an ablation is on one dataset."""
    arms = table_arms(table)
    measured = [[reader.measure(arm.dataset, arm.variant, metric, arm.scoring) for metric in IMAGE_METRICS]
                for arm in arms]
    body = []
    for arm, values, cells in zip(arms, measured, ranked_rows(measured, digits)):
        label = "Ours" if arm.row == "full" else arm.row
        papers = [published(table, arm.row, arm.column, metric) for metric in IMAGE_METRICS]
        for metric, paper, value in zip(IMAGE_METRICS, papers, values):
            reader.record(label, OURS, metric, value, paper)
        body.append({"label": label, "marks": list(arm.marks), "cells": cells,
                     "paper": [format_value(p, digits) for p in papers]})
    return reader.built({"rows": body, "dataset": DATASET_LABELS[arms[0].dataset], "components": components(table)})


def build_table3(reader: _CellReader) -> BuiltTable:
    """Architecture ablation M1-M4 and the full model on ZhangLab."""
    return _ablation_rows(reader, "table3", 1)


def build_table4(reader: _CellReader) -> BuiltTable:
    """L_div on/off × teacher-student / student-student scoring on BrainMRI."""
    return _ablation_rows(reader, "table4", 2)


def build_table5(reader: _CellReader) -> BuiltTable:
    """AUROC of the τ-grid variants named in params, grouped by dataset, beside the paper's grid."""
    digits, metric = 2, "image_AUROC"
    if not reader.settings.table5_arms:
        raise ConfigError("Table 5 needs τ variants: list them under plan.table5 in params")
    groups: list[dict[str, Any]] = []
    for arm in reader.settings.table5_arms:
        measured = reader.measure(arm.dataset, arm.variant, metric)
        column = tau_column(arm.tau_low, arm.tau_high)
        paper = _published_or_none("table5", arm.dataset, column, metric)
        reader.record(DATASET_LABELS[arm.dataset], arm.variant, metric, measured, paper)
        if not groups or groups[-1]["dataset"] != DATASET_LABELS[arm.dataset]:
            first = groups[-1]["last_column"] + 1 if groups else 2  # column 1 holds the row labels
            groups.append({"dataset": DATASET_LABELS[arm.dataset], "arms": [], "first_column": first})
        groups[-1]["last_column"] = groups[-1]["first_column"] + len(groups[-1]["arms"])
        groups[-1]["arms"].append(
            {
                "variant": arm.variant,
                "tau_low": f"{arm.tau_low:.2f}",
                "tau_high": f"{arm.tau_high:.2f}",
                "ours": format_measured(measured, digits),
                "paper": "--" if paper is None else format_value(paper, digits),
            }
        )
    return reader.built({"groups": groups, "n_columns": len(reader.settings.table5_arms)})


def _published_or_none(table: str, row: str, column: str, metric: str) -> float | None:
    """A τ arm the paper did not report has no published value: shown as '--', not compared."""
    present = any(arm.row == row and arm.column == column for arm in table_arms(table))
    return published(table, row, column, metric) if present else None


def build_results(reader: _CellReader) -> BuiltTable:
    """A plan table of the user's own: image AUROC / AP / F1-max (teacher-student scoring) per planned
    (dataset, variant), ranked per column. The paper has no such table, so its cells carry no paper value
    and the replication report leaves them out."""
    digits = 1
    pairs = reader.settings.results_table(reader.table).rows
    measured = [[reader.measure(dataset, variant, metric, "ts") for metric in IMAGE_METRICS]
                for dataset, variant in pairs]
    body = []
    for (dataset, variant), values, cells in zip(pairs, measured, ranked_rows(measured, digits)):
        label = DATASET_LABELS.get(dataset, dataset)
        for metric, value in zip(IMAGE_METRICS, values):
            reader.record(label, variant, metric, value, None)
        body.append({"dataset": label, "variant": variant, "cells": cells})
    return reader.built({"name": reader.table, "metrics": [METRIC_LABELS[m] for m in IMAGE_METRICS], "rows": body})


BUILDERS: dict[str, Callable[[_CellReader], BuiltTable]] = {
    "table1": build_table1,
    "table2": build_table2,
    "table3": build_table3,
    "table4": build_table4,
    "table5": build_table5,
}


def build_table(name: str, index: ResultsIndex, settings: ReportSettings) -> BuiltTable:
    """A paper table by its own builder; any other table the settings carry rows for as a results table."""
    reader = _CellReader(name, index, settings)
    if name in BUILDERS:
        return BUILDERS[name](reader)
    if settings.results_table(name) is not None:
        return build_results(reader)
    known = [*TABLES, *(table.name for table in settings.results_tables)]
    raise ConfigError(f"unknown table {name!r}; choose one of {', '.join(known)}")


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def provenance_lines(runs: Sequence[Run], results_root: Path, settings: ReportSettings) -> list[tuple[str, str]]:
    """What a table was made from, for its comment footer: one (label, value) per line, stable order."""

    def distinct(values: Any) -> str:
        return ", ".join(sorted({str(v) for v in values})) or "none"

    weights: dict[str, set[str]] = {}
    splits: dict[str, set[str]] = {}
    for run in runs:
        for teacher, identity in run.provenance.get("teacher_weights", {}).items():
            weights.setdefault(teacher, set()).add(str(identity))
        splits.setdefault(run.key.dataset, set()).add(str(run.provenance.get("split_sha256", "unknown")))
    commits = [f"{r.provenance.get('git_commit', 'unknown')}{' (dirty)' if r.provenance.get('git_dirty') else ''}"
               for r in runs]
    lines = [
        ("selection protocol", f"{settings.selection}: {SELECTIONS[settings.selection]}"),
        ("fidelity", settings.fidelity),
        ("seeds", ", ".join(str(s) for s in settings.seeds)),
        ("profile", distinct(r.data["run"].get("profile") for r in runs)),
        ("git commit", distinct(commits)),
        ("params sha256", distinct(r.provenance.get("params_sha256", "unknown") for r in runs)),
    ]
    lines += [(f"teacher weights {name}", distinct(ids)) for name, ids in sorted(weights.items())]
    lines += [(f"split sha256 {dataset}", distinct(ids)) for dataset, ids in sorted(splits.items())]
    lines += [("run", _relative(run.path, results_root)) for run in runs]
    return lines


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def render(template: str, built: BuiltTable | None, results_root: Path, settings: ReportSettings,
           runs: Sequence[Run] = (), **context: Any) -> str:
    """Render one template with the shared context: selection, demo banner and provenance footer."""
    runs = list(runs) or (built.runs if built else [])
    return template_environment().get_template(template).render(
        **(built.context if built else {}),
        **context,
        selection=settings.selection,
        selection_text=SELECTIONS[settings.selection],
        fidelity=settings.fidelity,
        n_seeds=len(settings.seeds),
        demo=any(run.demo for run in runs),
        demo_banner=DEMO_BANNER,
        provenance=provenance_lines(runs, results_root, settings),
    )


def render_table(built: BuiltTable, results_root: Path, settings: ReportSettings) -> str:
    """A paper table has a template of its own name; every results table shares one."""
    template = f"{built.name}.tex.j2" if built.name in BUILDERS else RESULTS_TEMPLATE
    return render(template, built, results_root, settings)
