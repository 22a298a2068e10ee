"""The paper's published numbers (Tables 1-5), read from the transcription in `published.yaml`.

Every value is kept with its table, row, column and metric so that a test can check it against the
paper text, and so that each reproduced table cell can be shown beside the number it replicates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import yaml

from pdd.errors import PDDError

OURS = "PDD"


@dataclass(frozen=True)
class PublishedValue:
    table: str
    row: str
    column: str
    metric: str
    value: float  # percent, as printed


def tau_column(tau_low: float, tau_high: float) -> str:
    """Column id of a Table 5 arm; thresholds are named as the paper prints them."""
    return f"tau_low={tau_low:.2f},tau_high={tau_high:.2f}"


@functools.lru_cache(maxsize=1)
def published_tables() -> dict:
    """The raw transcription: table -> {caption, metrics, rows | columns}."""
    text = resources.files("pdd.reporting").joinpath("published.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@functools.lru_cache(maxsize=1)
def published_values() -> tuple[PublishedValue, ...]:
    """Every published number as one flat record."""
    return flatten(published_tables())


def flatten(tables: dict) -> tuple[PublishedValue, ...]:
    """The records of a transcription in published.yaml's layout (the real one, or a test's altered copy)."""
    records = []
    for table, spec in tables.items():
        metrics = spec["metrics"]
        if table == "table5":
            for arm in spec["columns"]:
                column = tau_column(arm["tau_low"], arm["tau_high"])
                records.append(PublishedValue(table, arm["dataset"], column, metrics[0], float(arm[OURS])))
            continue
        for row, methods in spec["rows"].items():
            for method, values in methods.items():
                values = values if isinstance(values, list) else [values]
                records.extend(
                    PublishedValue(table, row, method, metric, float(value))
                    for metric, value in zip(metrics, values, strict=True)
                )
    return tuple(records)


@functools.lru_cache(maxsize=1)
def _index() -> dict[tuple[str, str, str, str], float]:
    return {(v.table, v.row, v.column, v.metric): v.value for v in published_values()}


def published(table: str, row: str, column: str, metric: str) -> float:
    """One published number (percent); a wrong address is a programming error in a table spec."""
    try:
        return _index()[(table, row, column, metric)]
    except KeyError:
        raise PDDError(
            f"published.yaml has no value for {table} / {row} / {column} / {metric}; "
            "check the table spec against pdd/reporting/published.yaml"
        ) from None


def methods(table: str) -> list[str]:
    """Method columns of a comparison table in the paper's order (baselines first, PDD last)."""
    first_row = next(iter(published_tables()[table]["rows"].values()))
    return list(first_row)


def rows(table: str) -> list[str]:
    return list(published_tables()[table]["rows"])
