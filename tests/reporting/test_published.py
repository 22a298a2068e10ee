"""The transcription in published.yaml must match the paper's Tables 1-5 number for number."""

from __future__ import annotations

import re


from pdd.reporting.published import OURS, published_values, tau_column

METRICS3 = ("image_AUROC", "image_AP", "image_F1max")


def _table_lines(text: str, number: int) -> list[list[str]]:
    """Tab-split rows of `Table <number>.` in paper.txt: the block after its caption, up to a blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}. "))
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            if rows:
                break
            continue
        rows.append([re.sub(r"</?u>", "", cell).strip() for cell in line.split("\t")])
    return rows


def _method(name: str) -> str:
    name = re.sub(r"\s*\[\d+\]$", "", name)
    return {"SIMSID": "SimSID", "Ours": OURS}.get(name, name)


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+", cell)]


def parse_paper(text: str) -> dict[tuple[str, str, str, str], float]:
    values: dict[tuple[str, str, str, str], float] = {}
    for number, metrics in ((1, ("image_AUROC",)), (2, METRICS3)):
        header, _venues, *body = _table_lines(text, number)
        methods = [_method(name) for name in header[1:]]
        for row in body:
            name = "mean" if row[0] == "Mean" else row[0].lower()
            for method, cell in zip(methods, row[1:], strict=True):
                for metric, value in zip(metrics, _numbers(cell), strict=True):
                    values[(f"table{number}", name, method, metric)] = value
    for number, row_names in ((3, {"Ours": "full"}), (4, {})):
        _header, *body = _table_lines(text, number)
        for row in body:
            for metric, value in zip(METRICS3, _numbers("\t".join(row[-3:])), strict=True):
                values[(f"table{number}", row_names.get(row[0], row[0]), OURS, metric)] = value
    header, tau_high, tau_low, auroc = _table_lines(text, 5)
    dataset = ""
    for i in range(1, len(auroc)):
        dataset = header[i].lower() if i < len(header) and header[i] else dataset
        column = tau_column(float(tau_low[i]), float(tau_high[i]))
        values[("table5", dataset, column, "image_AUROC")] = float(auroc[i])
    return values


def test_published_values_match_the_paper(shared_reference):
    paper = parse_paper((shared_reference / "paper.txt").read_text(encoding="utf-8"))
    ours = {(v.table, v.row, v.column, v.metric): v.value for v in published_values()}
    assert len(paper) == 7 * 4 + 7 * 4 * 3 + 5 * 3 + 4 * 3 + 7
    missing = sorted(set(paper) - set(ours))
    extra = sorted(set(ours) - set(paper))
    wrong = sorted((key, ours[key], paper[key]) for key in set(ours) & set(paper) if ours[key] != paper[key])
    assert not missing and not extra and not wrong, f"missing={missing} extra={extra} wrong={wrong}"
