"""Each paper table's arms, declared in published.yaml: params must provide them before any job runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pdd.config import load_params
from pdd.errors import ConfigError
from pdd.reporting.arms import rerun_arms, table_arms
from pdd.reporting.published import published_tables, rows


def test_every_arm_of_every_table_is_in_the_shipped_plan(repo_root):
    for profile in ("paper", "demo"):
        params = load_params(repo_root / "params.yaml", profile=profile)
        for table in published_tables():
            planned = {(run.dataset, run.variant) for run in params.plan_runs(table)}
            assert {(arm.dataset, arm.variant) for arm in table_arms(table)} <= planned, (profile, table)
            # the re-runs are optional for a plan, but the shipped one (and so the demo) has every one
            assert {(arm.dataset, arm.variant) for arm in rerun_arms(table)} <= planned, (profile, table)


def test_arms_fill_every_published_row_of_tables_1_to_4():
    for table in ("table1", "table2", "table3", "table4"):
        assert [arm.row for arm in table_arms(table)] == rows(table)
    assert [arm.marks for arm in table_arms("table3")] == [
        (False, False, True, False), (False, False, True, True), (True, False, False, False),
        (True, False, False, True), (False, True, False, True)]


def test_renaming_a_table_variant_fails_params_check_naming_table_and_arm(repo_root, tmp_path):
    copy = tmp_path / "params.yaml"
    copy.write_text((repo_root / "params.yaml").read_text().replace("full-nodiv", "full-without-div"))
    result = subprocess.run([sys.executable, "-m", "pdd", "params", "check", "--params", str(copy)],
                            capture_output=True, text=True, cwd=repo_root, timeout=300)
    assert result.returncode == 2, result.stderr
    assert ("plan.table4: arm brainmri/full-nodiv (full, lambda_div 0) is not a defined variant; the table needs "
            "it — define variants.full-nodiv or remove table4 from plan") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["variants.M2.arch=M1"], "plan.table3: arm zhanglab/M2 (M2): variants.M2 has arch M1; the table needs M2"),
        (["variants.full-nodiv.overrides={}"],
         "plan.table4: arm brainmri/full-nodiv (full, lambda_div 0): variants.full-nodiv resolves to lambda_div 0.5"),
        (["variants.tau-0.65-0.40.overrides.tau_low=0.5"],
         "plan.table5: arm zhanglab/tau-0.65-0.40 (full, tau_low 0.65, tau_high 0.4): variants.tau-0.65-0.40 "
         "resolves to tau_low 0.5"),
        (["plan.table3.0.variants=[M1, M2, M3, full]"],
         "plan.table3: arm zhanglab/M4 (M4) is not a run of plan.table3"),
        (["variants.rd4ad.arch=M2"],
         "plan.table1: the RD4AD re-run headct/rd4ad (M1): variants.rd4ad has arch M2; the re-run of RD4AD needs M1"),
        (["plan.table1.0.fidelities=[paper]"],
         "plan.table1: arm headct/full (full) is not a run of plan.table1 at fidelity code"),
        (["data.datasets={headct: {}, brainmri: {}, zhanglab: {}, unimedical: {classes: [brain, liver, retinal]}}",
          "plan.table1.0.datasets=[headct, zhanglab, brainmri]"],
         "plan.table1: arm chexpert/full (full): dataset chexpert is not defined; the table needs it — "
         "define data.datasets.chexpert or remove table1 from plan"),
    ],
)
def test_a_plan_that_cannot_fill_a_table_is_refused_naming_table_and_arm(repo_root, overrides, message):
    with pytest.raises(ConfigError) as error:
        load_params(repo_root / "params.yaml", overrides)
    assert message in str(error.value)


def test_a_plan_without_a_paper_table_needs_none_of_its_arms(repo_root):
    only_table1 = "plan={table1: [{datasets: [headct, zhanglab, brainmri, chexpert], variants: [full]}]}"
    params = load_params(repo_root / "params.yaml", [only_table1, "variants.full-nodiv.overrides.lambda_div=0.5"])
    assert list(params.plan) == ["table1"]
