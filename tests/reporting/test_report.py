"""The replication report end to end on a simulated results tree with per-image scores and known truth."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess

import pandas as pd
import pytest

from pdd.cli import main
from pdd.config import load_params
from pdd.errors import DataError
from pdd.reporting.report import FOREST_STEM, REPORT_STEM, build_report, forest_rows, render_report, selection_rows
from pdd.reporting.results import ResultsIndex, Run
from pdd.reporting.tables import DEMO_BANNER, TABLES, ReportSettings, build_table
from pdd.reporting.uncertainty import UncertaintySettings

from .conftest import SIMULATED_EPOCHS, SIMULATED_SEEDS


def _report(root, repo_root, args, **uncertainty):
    params = load_params(repo_root / "params.yaml", overrides=args)
    settings = ReportSettings.from_params(params)
    index = ResultsIndex.scan(root)
    tables = [build_table(name, index, settings) for name in params.plan if name in TABLES]
    u = UncertaintySettings(**{**UncertaintySettings.from_params(params).__dict__, **uncertainty})
    return build_report(index, settings, u, tables), tables


@pytest.fixture(scope="module")
def report(simulated_results, repo_root, simulated_params_args):
    return _report(simulated_results, repo_root, simulated_params_args)[0]


def test_every_published_cell_gets_our_number_an_interval_and_a_verdict(report):
    cells = {(cell.table, cell.row, cell.column, cell.metric): cell for cell in report.cells}
    assert len(cells) == 4 + 4 * 3 + 5 * 3 + 4 * 3 + 7 + 4 + 4 * 3  # Tables 1-5's PDD numbers, RD4AD's of 1-2
    assert cells[("table1", "HeadCT", "RD4AD (re-run)", "image_AUROC")].paper == 74.3  # the re-run vs its paper
    headct = cells[("table1", "HeadCT", "PDD", "image_AUROC")]  # simulated at AUROC 0.60 against the paper's 97.5
    assert headct.verdict == "lower" and headct.delta_interval[1] < 0 and not headct.within_tolerance
    for cell in report.cells:
        low, high = cell.estimate.interval.low, cell.estimate.interval.high
        assert 0 <= low <= cell.estimate.value <= high <= 1
        assert cell.verdict == ("reproduced" if low <= cell.paper / 100 <= high else
                                "lower" if high < cell.paper / 100 else "higher")
        assert len(cell.estimate.per_seed) == len(SIMULATED_SEEDS)
    # AUROC verdicts use DeLong by default, the other metrics the BCa bootstrap; both widened by the seeds
    assert headct.estimate.interval.method.startswith("DeLong (logit)")
    assert cells[("table3", "M1", "PDD", "image_AP")].estimate.interval.method.startswith("BCa bootstrap")


def test_claims_with_a_known_truth(report):
    verdicts = {(r.claim.family, r.claim.a.variant, r.claim.b.variant, r.claim.metric): r.verdict
                for r in report.claims if not hasattr(r.claim.b, "column")}
    assert verdicts[("table3", "M3", "M1", "image_AUROC")] == "supported"  # 0.97 against 0.62
    assert verdicts[("table3", "M4", "M3", "image_AUROC")] == "contradicted"  # 0.65 against 0.97
    assert all(r.verdict != "not run" for r in report.claims)
    paired = next(r for r in report.claims if r.claim.family == "table3" and r.claim.a.variant == "M3")
    assert paired.method == "DeLong paired" and paired.interval.low > 0


def test_pdd_against_the_rd4ad_rerun_with_a_known_truth_and_the_paper_margin_beside_ours(report):
    """Simulated: HeadCT's PDD at AUROC 0.60 against RD4AD's re-run at 0.95, ZhangLab's at 0.85 against 0.62.
    Each claim is tested paired on one test set; the paper's margin (74.3 -> 97.5 on HeadCT: +23.2 pp) is set
    beside ours, which must be its paired difference with the claim's interval."""
    rd4ad = {r.claim.paper_margin.row: r for r in report.claims if r.claim.family == "rd4ad_rerun"}
    assert list(rd4ad) == ["headct", "zhanglab", "brainmri", "chexpert", "brain", "liver", "retinal", "mean"]
    assert all(r.method == "DeLong paired" for r in rd4ad.values())
    assert (rd4ad["headct"].verdict, rd4ad["zhanglab"].verdict) == ("contradicted", "supported")
    margins = {g.result.claim.paper_margin.row: g for g in report.margins}
    assert margins.keys() == rd4ad.keys()
    assert margins["headct"].paper == pytest.approx(97.5 - 74.3) and margins["headct"].verdict == "smaller"
    assert margins["zhanglab"].paper == pytest.approx(94.0 - 87.5) and margins["zhanglab"].verdict == "larger"
    assert margins["mean"].paper == pytest.approx(81.4 - 75.6)
    for margin in margins.values():
        low, high = 100 * margin.result.interval.low, 100 * margin.result.interval.high
        assert margin.verdict == ("reproduced" if low <= margin.paper <= high else
                                  "smaller" if high < margin.paper else "larger")
        cells = {(cell.column, cell.row): cell.estimate.value for cell in report.cells if cell.metric == "image_AUROC"}
        row = {"headct": "HeadCT", "zhanglab": "ZhangLab", "brainmri": "BrainMRI", "chexpert": "CheXpert"}.get(
            margin.result.claim.paper_margin.row, margin.result.claim.paper_margin.row)
        assert margin.result.estimate == pytest.approx(cells[("PDD", row)] - cells[("RD4AD (re-run)", row)])


def test_forest_rows_name_the_method_where_a_table_has_two(report):
    """Tables 1-2 set PDD beside the RD4AD re-run: each row names its method; Table 3's rows are variants of PDD."""
    labels = [row.label for row in forest_rows(report)]
    assert len(labels) == len(report.cells) == len(set(labels))
    assert {"T1 HeadCT PDD AUROC", "T1 HeadCT RD4AD (re-run) AUROC", "T2 brain PDD AP"} <= set(labels)
    assert "T3 M1 AUROC" in labels and not any(label.startswith("T3") and "PDD" in label for label in labels)


def test_selection_optimism_is_best_minus_last_with_the_choice_resampled(report, simulated_results):
    rows = [row for row in report.optimism if row.seed is not None]
    assert rows and all(row.last_epoch == max(SIMULATED_EPOCHS) for row in rows)
    for row in rows:
        metrics = json.loads((simulated_results / row.arm.dataset / row.arm.variant / row.arm.fidelity /
                              f"seed{row.seed}" / "metrics.json").read_text())["metrics"][row.arm.scoring]
        expected = metrics["best_of_test"]["pooled"]["image_AUROC"] - metrics["last"]["pooled"]["image_AUROC"]
        assert row.value == pytest.approx(expected, abs=1e-12) and row.value >= 0
        # the resampled selection is never below the fixed one's difference: max over snapshots >= last
        assert row.interval.low >= -1e-12 and row.interval.high >= row.value - 1e-12


def test_operating_points_of_every_reported_run(report):
    metrics = {row.metric for row in report.run_rows}
    assert {"image_sens_at_spec95", "image_spec_at_sens95"} <= metrics
    for row in report.run_rows:
        assert row.bootstrap.low <= row.value + 1e-9 and row.value <= row.bootstrap.high + 1e-9
        assert (row.delong is not None) == (row.metric == "image_AUROC")


def test_pdd_report_writes_the_report_and_the_forest_plot(simulated_results, tmp_path, simulated_params_args):
    out = tmp_path / "tables"
    sets = [f"--set={item}" for item in simulated_params_args]
    assert main(["report", "--params", "params.yaml", *sets, "--results", str(simulated_results),
                 "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [f"{REPORT_STEM}.md", f"{REPORT_STEM}.tex", f"{FOREST_STEM}.png", f"{FOREST_STEM}.pdf"])
    markdown = (out / f"{REPORT_STEM}.md").read_text()
    for heading in ("## Verdicts per published cell", "## The paper's claims", "## The paper against itself",
                    "## Selection optimism", "## Every run's numbers",
                    "## Margins over the re-run baselines: the paper's against ours"):
        assert heading in markdown
    assert "| paper T1 headct: PDD − RD4AD | AUROC | +23.20 |" in markdown and "**smaller**" in markdown
    assert "| 1 | HeadCT | PDD | AUROC | 97.50 |" in markdown and "**lower**" in markdown
    assert "DEMO" not in markdown  # the simulated runs are not marked demo
    assert "## Model selection: per-image vs the authors' evaluator" in markdown


def test_pdd_results_lists_every_run(simulated_results, capsys):
    assert main(["results", "--results", str(simulated_results), "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    runs = {path.parent for path in simulated_results.glob("*/*/*/seed*/metrics.json")}
    assert frame.groupby(["dataset", "variant", "fidelity", "seed"]).ngroups == len(runs)
    assert set(frame.selection) == {"last", "best_of_test"} and frame.scores_file.str.endswith(".json").all()
    assert main(["results", "--results", str(simulated_results), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| dataset")


def test_runs_without_per_image_scores_are_refused_with_what_to_do(simulated_results, tmp_path, repo_root,
                                                                    simulated_params_args):
    root = shutil.copytree(simulated_results, tmp_path / "results")
    epoch_file = root / "headct" / "full" / "code" / "seed0" / "eval" / "epoch_002.json"
    document = json.loads(epoch_file.read_text())
    del document["images"]
    epoch_file.write_text(json.dumps(document))
    with pytest.raises(DataError, match="no per-image scores.*pdd evaluate"):
        _report(root, repo_root, simulated_params_args)


def test_runs_scored_on_other_test_images_are_refused(simulated_results, tmp_path, repo_root, simulated_params_args):
    root = shutil.copytree(simulated_results, tmp_path / "results")
    for epoch_file in (root / "headct" / "tau-0.40-0.75" / "code" / "seed1" / "eval").glob("epoch_*.json"):
        document = json.loads(epoch_file.read_text())
        document["images"]["paths"][0] = "test/good/another.png"
        epoch_file.write_text(json.dumps(document))
    with pytest.raises(DataError, match="other test images"):
        _report(root, repo_root, simulated_params_args)


def test_both_best_of_test_selections_side_by_side(results_copy):
    """A run whose metrics.json records the epoch each selection scorer picks gets a row; the others none."""
    path = results_copy / "headct" / "full" / "code" / "seed0" / "metrics.json"
    document = json.loads(path.read_text())
    ts = document["metrics"]["ts"]
    ours = {**ts["best_of_test"], "selected_by": "per_image",
            "selection_AUROC": ts["best_of_test"]["pooled"]["image_AUROC"]}
    official = {**ts["last"], "selected_by": "official_first_image", "selection_AUROC": 0.975}
    ts["best_of_test_by"] = {"per_image": ours, "official_first_image": official}
    path.write_text(json.dumps(document))
    rows = selection_rows(list(ResultsIndex.scan(results_copy).runs.values()))
    assert [(row.run, row.scoring, row.per_image_epoch, row.official_epoch, row.official_criterion, row.differ)
            for row in rows] == [("headct/full/code/seed0", "ts", ours["epoch"], official["epoch"], 97.5,
                                  ours["epoch"] != official["epoch"])]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_report_compiles_with_pdflatex(simulated_results, tmp_path, simulated_params_args):
    sets = [f"--set={item}" for item in simulated_params_args]
    assert main(["report", "--params", "params.yaml", *sets, "--results", str(simulated_results),
                 "--out", str(tmp_path)]) == 0
    (tmp_path / "main.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx,amssymb,longtable}\n"
        f"\\begin{{document}}\n\\input{{{REPORT_STEM}}}\n\\end{{document}}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_report_of_demo_runs_carries_the_banner(report, simulated_results, repo_root, simulated_params_args,
                                                  tmp_path):
    demo_runs = [Run(run.key, run.path, {**run.data, "run": {**run.data["run"], "demo": True}})
                 for run in report.runs]
    settings = ReportSettings.from_params(load_params(repo_root / "params.yaml", overrides=simulated_params_args))
    render_report(dataclasses.replace(report, runs=demo_runs), simulated_results, settings, tmp_path)
    assert (tmp_path / f"{REPORT_STEM}.md").read_text().count(DEMO_BANNER) == 1
    assert DEMO_BANNER.replace("—", "---") in (tmp_path / f"{REPORT_STEM}.tex").read_text()


def test_a_plan_of_table1_alone_reports_its_cells_and_leaves_other_claims_not_run(simulated_results, tmp_path,
                                                                                   repo_root, simulated_params_args):
    root = tmp_path / "results"
    for dataset in ("headct", "zhanglab", "brainmri", "chexpert"):
        shutil.copytree(simulated_results / dataset / "full", root / dataset / "full")
    params = load_params(repo_root / "params.yaml", overrides=[*simulated_params_args, "plan.table1.0.variants=[full]"])
    settings = ReportSettings.from_params(params)
    index = ResultsIndex.scan(root)
    report = build_report(index, settings, UncertaintySettings.from_params(params), [build_table("table1", index,
                                                                                                settings)])
    assert [cell.table for cell in report.cells] == ["table1"] * 4
    verdicts = {result.claim.family: result.verdict for result in report.claims}
    assert verdicts["table2"] == verdicts["table3"] == "not run"  # Uni-Medical and the ablations were not run
    assert verdicts["table1"] != "not run"
    assert verdicts["rd4ad_rerun"] == "not run" and report.margins == []  # nor RD4AD's re-run
