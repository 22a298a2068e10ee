"""Tables 1-5: golden renders, a trace of every reproduced cell to metrics.json keys, clear failures."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys

import pytest

from pdd.config import load_params
from pdd.errors import DataError, PDDError
from pdd.reporting.arms import table_arms
from pdd.reporting.latex import rank_styles
from pdd.reporting.results import ResultsIndex
from pdd.reporting.tables import DEMO_BANNER, TABLES, ReportSettings, Table5Arm, build_table, render_table

from .conftest import PAPER_TAU_ARMS, assert_golden


@pytest.fixture(scope="module")
def built(fixture_results, settings):
    index = ResultsIndex.scan(fixture_results)
    return {name: build_table(name, index, settings) for name in TABLES}


@pytest.mark.parametrize("name", TABLES)
def test_table_matches_golden(name, built, fixture_results, settings):
    assert_golden(f"{name}.tex", render_table(built[name], fixture_results, settings))


def _follow(path, dotted_key):
    node = json.loads(path.read_text())
    for part in dotted_key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("name", TABLES)
def test_every_reproduced_cell_traces_to_metrics_keys(name, built, fixture_results, settings):
    table = built[name]
    tex = render_table(table, fixture_results, settings)
    body = tex[tex.index(r"\midrule") : tex.index(r"\bottomrule")]
    # with two seeds every reproduced number (and only those) is printed as mean$\pm$std
    assert body.count(r"$\pm$") == len(table.cells) > 0
    for cell in table.cells:
        sources = cell.measured.sources
        assert {s.path.parent.name for s in sources} == {"seed0", "seed1"}
        for source in sources:
            assert source.path.is_relative_to(fixture_results)
            assert _follow(source.path, source.key) == source.value
            assert source.key.split(".")[2] == settings.selection
        per_seed = [
            statistics.fmean(s.value for s in sources if s.path.parent.name == seed) for seed in ("seed0", "seed1")
        ]
        assert cell.measured.mean == pytest.approx(statistics.fmean(per_seed))
        assert cell.measured.std == pytest.approx(statistics.stdev(per_seed))
        printed = f"{100 * cell.measured.mean:.{2 if name in ('table4', 'table5') else 1}f}$\\pm$"
        assert printed in body


def test_selection_protocol_changes_the_numbers(fixture_results, settings):
    index = ResultsIndex.scan(fixture_results)
    best = build_table("table1", index, settings).cells[0]
    last = build_table("table1", index, ReportSettings(**{**settings.__dict__, "selection": "last"})).cells[0]
    assert {s.key for s in last.measured.sources} == {"metrics.ts.last.pooled.image_AUROC"}
    assert best.measured.mean != last.measured.mean
    tex = render_table(build_table("table1", index, ReportSettings(**{**settings.__dict__, "selection": "last"})),
                       fixture_results, settings)
    assert "selection protocol: best_of_test" in tex  # the footer names the protocol of the settings it got


def _edit(path, edit):
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def test_missing_run_names_the_expected_file(results_copy, settings):
    target = results_copy / "headct" / "full" / "code" / "seed1"
    shutil.rmtree(target)
    with pytest.raises(DataError, match=re.escape(str(target / "metrics.json"))):
        build_table("table1", ResultsIndex.scan(results_copy), settings)


def test_missing_scoring_names_file_and_key(results_copy, settings):
    path = results_copy / "brainmri" / "full-nodiv" / "code" / "seed1" / "metrics.json"
    _edit(path, lambda d: d["metrics"].pop("ss"))
    with pytest.raises(DataError) as error:
        build_table("table4", ResultsIndex.scan(results_copy), settings)
    assert str(path) in str(error.value) and "metrics.ss.best_of_test.pooled.image_AUROC" in str(error.value)


def test_missing_class_names_file_and_key(results_copy, settings):
    path = results_copy / "unimedical" / "full" / "code" / "seed0" / "metrics.json"
    _edit(path, lambda d: d["metrics"]["ts"]["best_of_test"]["per_class"].pop("liver"))
    with pytest.raises(DataError, match=r"per_class\.liver\.image_AUROC' is missing"):
        build_table("table2", ResultsIndex.scan(results_copy), settings)


def test_null_metric_is_an_error_not_a_blank(results_copy, settings):
    path = results_copy / "zhanglab" / "M3" / "code" / "seed0" / "metrics.json"
    _edit(path, lambda d: d["metrics"]["ts"]["best_of_test"]["pooled"].update(image_AP=None))
    with pytest.raises(DataError, match=r"metrics\.ts\.best_of_test\.pooled\.image_AP' is null"):
        build_table("table3", ResultsIndex.scan(results_copy), settings)


def test_invalid_metrics_file_is_reported_with_its_path(results_copy, settings):
    path = results_copy / "chexpert" / "full" / "code" / "seed0" / "metrics.json"
    _edit(path, lambda d: d["metrics"]["ts"]["last"]["pooled"].pop("image_F1max"))
    with pytest.raises(PDDError, match=re.escape(str(path))):
        ResultsIndex.scan(results_copy)


def test_demo_runs_carry_the_banner(results_copy, settings):
    path = results_copy / "headct" / "full" / "code" / "seed0" / "metrics.json"
    _edit(path, lambda d: d["run"].update(demo=True))
    index = ResultsIndex.scan(results_copy)
    tex = render_table(build_table("table1", index, settings), results_copy, settings)
    assert r"\caption{\textbf{DEMO --- synthetic data, random-init teachers: not the paper's numbers.}" in tex
    assert DEMO_BANNER not in render_table(build_table("table3", index, settings), results_copy, settings)


def test_rank_styles_follow_printed_values():
    assert rank_styles([90.04, 90.0, 85.0, 70.0], 1) == ["best", "best", "second", None]
    assert rank_styles([1.0], 1) == ["best"]


def test_params_define_every_table5_arm_of_the_paper(repo_root):
    params = load_params(repo_root / "params.yaml")
    settings = ReportSettings.from_params(params)
    assert settings.selection == params.reporting.selection
    assert [(a.dataset, a.tau_low, a.tau_high) for a in settings.table5_arms] == [
        (arm.dataset, arm.options["tau_low"], arm.options["tau_high"]) for arm in table_arms("table5")]
    assert settings.table5_arms == PAPER_TAU_ARMS


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_tables_compile_with_pdflatex(built, fixture_results, settings, tmp_path):
    for name, table in built.items():
        (tmp_path / f"{name}.tex").write_text(render_table(table, fixture_results, settings))
    inputs = "\n".join(rf"\input{{{name}}}\clearpage" for name in TABLES)
    (tmp_path / "main.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx,amssymb,longtable}\n"
        f"\\begin{{document}}\n{inputs}\n\\end{{document}}\n"
    )
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "main.pdf").stat().st_size > 10_000


def test_pdd_tables_renders_the_tables_of_the_plan_only(fixture_results, repo_root, tmp_path):
    """A plan of Table 1 alone gives table1.tex, and needs no other table's runs."""
    results = tmp_path / "results"
    shutil.copytree(fixture_results / "headct", results / "headct")
    for name in ("zhanglab", "brainmri", "chexpert"):
        shutil.copytree(fixture_results / name / "full", results / name / "full")
    params = tmp_path / "params.yaml"
    plan = (repo_root / "params.yaml").read_text().split("\nplan:")[0]
    params.write_text(plan + "\nplan:\n  table1:\n    - {datasets: [headct, zhanglab, brainmri, chexpert], variants: [full]}\n"
                      "reporting:\n  figure_runs: []\n")
    result = subprocess.run([sys.executable, "-m", "pdd", "tables", "--params", str(params), "--results", str(results),
                             "--out", str(tmp_path / "tables")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["table1.tex"]


def test_a_table5_arm_the_paper_did_not_report_is_shown_without_a_paper_value(results_copy, settings):
    shutil.copytree(results_copy / "zhanglab" / "tau-0.65-0.40", results_copy / "zhanglab" / "tau-0.50-0.50")
    for path in (results_copy / "zhanglab" / "tau-0.50-0.50").glob("code/seed*/metrics.json"):
        document = json.loads(path.read_text())
        document["run"]["variant"] = "tau-0.50-0.50"
        path.write_text(json.dumps(document))
    extra = Table5Arm("zhanglab", "tau-0.50-0.50", 0.50, 0.50)
    arms = (*PAPER_TAU_ARMS[:3], extra, *PAPER_TAU_ARMS[3:])
    table = build_table("table5", ResultsIndex.scan(results_copy), ReportSettings(**{**settings.__dict__,
                                                                                     "table5_arms": arms}))
    assert [cell.paper is None for cell in table.cells] == [arm is extra for arm in arms]
    zhanglab = table.context["groups"][0]["arms"]
    assert [arm["paper"] for arm in zhanglab] == ["94.52", "96.18", "95.92", "--"]


def test_the_rd4ad_rerun_stands_beside_its_published_column_or_is_marked_not_run(fixture_results, settings,
                                                                                repo_root):
    """Both RD4AD columns, labelled; the re-run's cells read its own runs (and carry RD4AD's published value);
    a plan without the re-run prints -- and says how to add it."""
    index = ResultsIndex.scan(fixture_results)
    table1 = build_table("table1", index, settings)
    reruns = [cell for cell in table1.cells if cell.column == "RD4AD (re-run)"]
    assert [(cell.row, cell.paper) for cell in reruns] == [
        ("HeadCT", 74.3), ("ZhangLab", 87.5), ("BrainMRI", 80.9), ("CheXpert", 71.9)]
    assert all({source.path.parts[-4] for source in cell.measured.sources} == {"rd4ad"} for cell in reruns)
    assert "RD4AD (paper) & RD4AD (re-run)" in render_table(table1, fixture_results, settings)
    table2 = build_table("table2", index, settings)
    assert {(cell.row, cell.metric) for cell in table2.cells if cell.column == "RD4AD (re-run)"} == {
        (row, metric) for row in ("brain", "liver", "retinal", "mean")
        for metric in ("image_AUROC", "image_AP", "image_F1max")}

    without = ReportSettings(**{**settings.__dict__, "reruns": ()})
    built = build_table("table1", index, without)
    tex = render_table(built, fixture_results, without)
    assert [cell.column for cell in built.cells] == ["PDD"] * 4
    assert tex.count(" & -- & ") == 4 and r"RD4AD not re-run (add variant \texttt{rd4ad} to \texttt{plan.table1})" in tex
    assert "rd4ad/code" not in tex  # its runs are not read, so not in the provenance footer
    shipped = ReportSettings.from_params(load_params(repo_root / "params.yaml"))
    assert set(shipped.reruns) == set(settings.reruns)
    only_pdd = load_params(repo_root / "params.yaml", ["plan.table1.0.variants=[full]", "plan.table2.0.variants=[full]"])
    assert ReportSettings.from_params(only_pdd).reruns == ()
