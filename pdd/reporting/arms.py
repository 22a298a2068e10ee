"""The runs each paper table is made of ("arms"), declared once in `published.yaml` beside the numbers.

`pdd.reporting.tables` renders from these arms, and `Params` validation checks `plan.<table>` against them,
so a variant renamed or redefined in params.yaml fails `pdd params check` (and so every command) before a
single run is trained, rather than at the end, when the table is rendered.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Iterator

from pdd.reporting.published import OURS, published_tables, tau_column


@dataclass(frozen=True)
class Arm:
    """The run that fills one PDD cell (`row`, `column`) of a paper table, and what the paper says that run is.

    `arch` and `options` (resolved model options, e.g. Table 4's `lambda_div: 0` or Table 5's τ) are what
    params must agree with; `scoring` says which of the run's scorings the cell reads; `marks` are the
    paper's check marks under the table's `components` (Tables 3 and 4)."""

    row: str
    column: str
    dataset: str
    variant: str
    arch: str = "full"
    scoring: str = "ts"
    options: dict[str, float] = field(default_factory=dict)
    marks: tuple[bool, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.variant}"

    @property
    def description(self) -> str:
        """What the paper's arm is, e.g. `full, lambda_div 0`: shown in errors beside the arm's name."""
        return ", ".join([self.arch, *(f"{key} {value:g}" for key, value in self.options.items())])


@functools.lru_cache(maxsize=None)
def table_arms(table: str) -> tuple[Arm, ...]:
    """The arms of a paper table in the paper's order: one per row (Tables 1-4), one per column (Table 5)."""
    spec = published_tables()[table]
    if table == "table5":
        return tuple(
            Arm(column["dataset"], tau_column(column["tau_low"], column["tau_high"]), column["dataset"],
                column["variant"], options={"tau_low": column["tau_low"], "tau_high": column["tau_high"]})
            for column in spec["columns"]
        )
    return tuple(Arm(row, OURS, **{**arm, "marks": tuple(arm.get("marks", ()))}) for row, arm in spec["arms"].items())


@functools.lru_cache(maxsize=None)
def rerun_arms(table: str) -> tuple[Arm, ...]:
    """The re-runs of a table's published baselines (`reruns` in published.yaml): per row, one arm per re-run
    baseline column on that row's dataset, in the table's row order (none for a table without re-runs)."""
    reruns = published_tables()[table].get("reruns", {})
    return tuple(Arm(arm.row, column, arm.dataset, **spec) for arm in table_arms(table)
                 for column, spec in reruns.items())


def components(table: str) -> list[str]:
    """The column heads the check marks of a table's arms stand under (LaTeX, as the paper prints them)."""
    return list(published_tables()[table]["components"])


def plan_arm_problems(params: Any) -> Iterator[tuple[str, str]]:
    """(`plan.<table>`, what is wrong and what to do) for every paper arm that `params` cannot produce.

    Each paper table in `params.plan` needs each of its arms to be a defined dataset and variant, a run of
    that table's plan entries at the reported fidelity, and a variant of the arm's architecture and options."""
    from pdd.models.options import PDDOptions  # the resolved options, fidelity defaults included

    fidelity = params.model.fidelity
    for table in published_tables():
        if table not in params.plan:
            continue
        planned = {(run.dataset, run.variant) for run in params.plan_runs(table) if run.fidelity == fidelity}
        remedy = f"or remove {table} from plan"
        for arm in _distinct(table_arms(table)):
            where = f"arm {arm.name} ({arm.description})"
            if arm.dataset not in params.data.datasets:
                yield f"plan.{table}", (f"{where}: dataset {arm.dataset} is not defined; the table needs it — "
                                        f"define data.datasets.{arm.dataset} {remedy}")
                continue
            if arm.variant not in params.variants:
                yield f"plan.{table}", (f"{where} is not a defined variant; the table needs it — "
                                        f"define variants.{arm.variant} {remedy}")
                continue
            variant = params.variants[arm.variant]
            if variant.arch != arm.arch:
                yield f"plan.{table}", (f"{where}: variants.{arm.variant} has arch {variant.arch}; the table needs "
                                        f"{arm.arch} — set variants.{arm.variant}.arch: {arm.arch} {remedy}")
                continue
            resolved = PDDOptions.resolve(variant.arch, fidelity, **params.model_options(arm.variant))
            wrong = {key: value for key, value in arm.options.items() if getattr(resolved, key) != value}
            if wrong:
                got = ", ".join(f"{key} {getattr(resolved, key):g}" for key in wrong)
                want = ", ".join(f"variants.{arm.variant}.overrides.{key}: {value:g}" for key, value in wrong.items())
                yield f"plan.{table}", (f"{where}: variants.{arm.variant} resolves to {got} under fidelity "
                                        f"{fidelity}; the table needs the paper's — set {want} {remedy}")
                continue
            if (arm.dataset, arm.variant) not in planned:
                yield f"plan.{table}", (f"{where} is not a run of plan.{table} at fidelity {fidelity}; the table "
                                        f"needs it — add datasets: [{arm.dataset}], variants: [{arm.variant}] "
                                        f"to plan.{table} {remedy}")
        for arm in _distinct(rerun_arms(table)):  # optional, but a planned re-run must be the baseline's
            if (arm.dataset, arm.variant) in planned and params.variants[arm.variant].arch != arm.arch:
                yield f"plan.{table}", (f"the {arm.column} re-run {arm.name} ({arm.arch}): variants.{arm.variant} "
                                        f"has arch {params.variants[arm.variant].arch}; the re-run of {arm.column} "
                                        f"needs {arm.arch} — set variants.{arm.variant}.arch: {arm.arch} or remove "
                                        f"{arm.variant} from plan.{table}")


def _distinct(arms: tuple[Arm, ...]) -> Iterator[Arm]:
    """One arm per run: Table 2 reads one run for all its rows, Table 4 two scorings of each run."""
    seen: set[tuple[str, str]] = set()
    for arm in arms:
        if (arm.dataset, arm.variant) not in seen:
            seen.add((arm.dataset, arm.variant))
            yield arm
