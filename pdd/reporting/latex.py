"""LaTeX for the tables: escaping, the Jinja2 environment of the templates, and numbers with best/second styles.

Kept apart from the table builders (`pdd.reporting.tables`) so that every LaTeX output (the tables, the
replication report) formats and escapes the same way from one place.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jinja2

from pdd.reporting.results import Measured


def format_value(percent: float, digits: int) -> str:
    return f"{percent:.{digits}f}"


def format_measured(measured: Measured, digits: int) -> str:
    """`mean` or `mean ± std` over seeds, in percent, LaTeX math for the ±."""
    text = format_value(100.0 * measured.mean, digits)
    if measured.std is not None:
        text += rf"$\pm${format_value(100.0 * measured.std, digits)}"
    return text


def rank_styles(values: Sequence[float | None], digits: int) -> list[str | None]:
    """'best' / 'second' for the highest and second-highest printed values (ties share a style); a None value
    (a cell with no number, e.g. a re-run the plan leaves out) is not ranked."""
    rounded = [None if v is None else round(v, digits) for v in values]
    distinct = sorted({v for v in rounded if v is not None}, reverse=True)
    style = ({distinct[0]: "best"} if distinct else {}) | ({distinct[1]: "second"} if len(distinct) > 1 else {})
    return [None if v is None else style.get(v) for v in rounded]


def styled_cells(texts: Sequence[str], values: Sequence[float | None], digits: int) -> list[dict[str, Any]]:
    """Template cells: each printed text with the best/second style its value earns among `values`."""
    return [{"text": t, "style": s} for t, s in zip(texts, rank_styles(values, digits))]


def ranked_rows(measured: Sequence[Sequence[Measured]], digits: int) -> list[list[dict[str, Any]]]:
    """Cells of rows × metrics, best/second ranked within each metric's column rather than within a row."""
    columns = [
        styled_cells([format_measured(m, digits) for m in column], [100.0 * m.mean for m in column], digits)
        for column in zip(*measured)
    ]
    return [list(row) for row in zip(*columns)]


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "—": "---",
    "τ": r"$\tau$",
    "−": r"$-$",
    "≈": r"$\approx$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "<": r"$<$",  # OT1 text mode prints < and > as inverted punctuation
    ">": r"$>$",
    "“": "``",
    "”": "''",
}


def tex_escape(text: Any) -> str:
    """Make a plain string safe inside LaTeX text."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def tex_comment(text: Any) -> str:
    """A value safe on one LaTeX comment line (no line breaks can end the comment early)."""
    return " ".join(str(text).split())


@functools.lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """Jinja2 with LaTeX-friendly delimiters: \\BLOCK{...}, \\VAR{...}, \\#{...}; undefined names fail."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pdd.reporting", "templates"),
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        line_comment_prefix="%#",
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["tex"] = tex_escape
    env.filters["comment"] = tex_comment
    return env
