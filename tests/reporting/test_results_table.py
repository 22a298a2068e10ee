"""A results table for a plan table the paper does not have, over a dataset the paper does not know."""

from __future__ import annotations

import json
import re
import shutil
import statistics

import pytest
import yaml

from pdd.cli import main
from pdd.config import load_params
from pdd.errors import ConfigError, DataError
from pdd.reporting.results import ResultsIndex
from pdd.reporting.tables import TABLES, ReportSettings, ResultsTable, build_table, render_table

NAME = "mydata_results"
# plan order; mydata/full comes twice and is shown once
PLAN = [{"datasets": ["mydata"], "variants": ["full", "M1"]}, {"datasets": ["headct", "mydata"], "variants": ["full"]}]
ROWS = (("mydata", "full"), ("mydata", "M1"), ("headct", "full"))
METRICS = ("image_AUROC", "image_AP", "image_F1max")


@pytest.fixture
def results(fixture_results, tmp_path):
    """The fixture results plus runs of `mydata`: ZhangLab's full and M1 runs under the new dataset's name."""
    root = shutil.copytree(fixture_results, tmp_path / "results")
    for variant in ("full", "M1"):
        for seed in (0, 1):
            path = root / "mydata" / variant / "code" / f"seed{seed}" / "metrics.json"
            path.parent.mkdir(parents=True)
            document = json.loads((root / "zhanglab" / variant / "code" / f"seed{seed}" / "metrics.json").read_text())
            document["run"]["dataset"] = "mydata"
            path.write_text(json.dumps(document))
    return root


@pytest.fixture
def custom_settings(settings):
    return ReportSettings(**{**settings.__dict__, "results_tables": (ResultsTable(NAME, ROWS),)})


@pytest.fixture
def params_file(repo_root, tmp_path):
    """params.yaml with the new dataset, its plan table and the fixture's two seeds."""
    tree = yaml.safe_load((repo_root / "params.yaml").read_text())
    tree["data"]["datasets"]["mydata"] = {}
    tree["plan"][NAME] = PLAN
    tree["seeds"] = [0, 1]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _expected_cells(results_root, dataset, variant):
    """mean$\\pm$std over the two seeds of each metric, in percent, straight from the files."""
    per_metric = []
    for metric in METRICS:
        values = [
            json.loads((results_root / dataset / variant / "code" / f"seed{seed}" / "metrics.json").read_text())
            ["metrics"]["ts"]["best_of_test"]["pooled"][metric]
            for seed in (0, 1)
        ]
        per_metric.append((100 * statistics.fmean(values), 100 * statistics.stdev(values)))
    return per_metric


def test_from_params_carries_the_plan_rows_of_every_results_table(params_file):
    settings = ReportSettings.from_params(load_params(params_file))
    assert settings.results_tables == (ResultsTable(NAME, ROWS),)
    assert settings.results_table("table1") is None


def test_results_table_rows_numbers_and_ranks(results, custom_settings):
    built = build_table(NAME, ResultsIndex.scan(results), custom_settings)
    tex = render_table(built, results, custom_settings)
    body = tex[tex.index(r"\midrule") + len(r"\midrule") : tex.index(r"\bottomrule")].strip().splitlines()
    expected = [_expected_cells(results, *row) for row in ROWS]
    for column in range(len(METRICS)):
        ranked = sorted({round(cells[column][0], 1) for cells in expected}, reverse=True)
        assert len(ranked) == len(ROWS)  # distinct printed means, so the styles below are unambiguous
        for cells in expected:
            mean, std = cells[column]
            text = f"{mean:.1f}$\\pm${std:.1f}"
            style = {ranked[0]: r"\textbf{%s}", ranked[1]: r"\underline{%s}"}.get(round(mean, 1), "%s")
            cells[column] = style % text
    labels = ["mydata & full", "mydata & M1", "HeadCT & full"]
    assert body == [f"{label} & {' & '.join(cells)} \\\\" for label, cells in zip(labels, expected)]
    assert r"\caption{Results of \texttt{mydata\_results}: image AUROC / AP / F1-max" in tex
    assert r"\label{tab:mydata_results}" in tex
    assert "% run: mydata/M1/code/seed1/metrics.json" in tex  # the provenance footer
    assert "mean$\\pm$std over 2 seeds" in tex


def test_results_table_cells_have_no_paper_value(results, custom_settings):
    """So the replication report, which reads only cells with a published value, leaves them out."""
    custom = build_table(NAME, ResultsIndex.scan(results), custom_settings)
    assert len(custom.cells) == len(ROWS) * len(METRICS) and all(cell.paper is None for cell in custom.cells)


def test_results_table_names_a_missing_run(results, custom_settings):
    target = results / "mydata" / "M1" / "code" / "seed1"
    shutil.rmtree(target)
    with pytest.raises(DataError, match=re.escape(str(target / "metrics.json"))):
        build_table(NAME, ResultsIndex.scan(results), custom_settings)


def test_a_table_neither_the_paper_nor_the_settings_know_is_an_error(results, settings):
    with pytest.raises(ConfigError, match=f"unknown table '{NAME}'; choose one of table1, "):
        build_table(NAME, ResultsIndex.scan(results), settings)


def test_results_table_of_demo_runs_carries_the_banner(results, custom_settings):
    path = results / "mydata" / "M1" / "code" / "seed0" / "metrics.json"
    document = json.loads(path.read_text())
    document["run"]["demo"] = True
    path.write_text(json.dumps(document))
    tex = render_table(build_table(NAME, ResultsIndex.scan(results), custom_settings), results, custom_settings)
    assert r"\caption{\textbf{DEMO --- synthetic data, random-init teachers: not the paper's numbers.} Results" in tex


def test_cli_renders_results_tables_with_and_without_only(params_file, results, tmp_path):
    common = ["tables", "--params", str(params_file), "--results", str(results)]
    assert main([*common, "--out", str(tmp_path / "all")]) == 0
    written = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert written == sorted(f"{name}.tex" for name in [*TABLES, NAME])

    assert main([*common, "--out", str(tmp_path / "only"), "--only", NAME]) == 0
    assert [p.name for p in (tmp_path / "only").iterdir()] == [f"{NAME}.tex"]
    assert (tmp_path / "only" / f"{NAME}.tex").read_text() == (tmp_path / "all" / f"{NAME}.tex").read_text()


def test_cli_only_names_the_plan_tables_when_a_table_is_unknown(params_file, capsys):
    assert main(["tables", "--params", str(params_file), "--only", "unknown"]) == 2
    message = capsys.readouterr().err
    assert f"unknown table 'unknown'; params.plan defines: table1, table2, table3, table4, table5, {NAME}" in message
