"""Snakemake and DVC lay out the same jobs and files for the same params (dry runs only, no jobs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pdd.config import load_params
from pdd.config.fingerprints import REPORT_OUTPUTS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(*command: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def snakemake_outputs(*targets: str, profile: str = "paper", extra: tuple[str, ...] = ()) -> set[str]:
    """Every file the workflow would produce for `targets`, from `snakemake --summary` (runs nothing)."""
    result = _run(str(BIN / "snakemake"), *targets, "--summary", "--nolock", *extra, "--config", f"profile={profile}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    return {line.split("\t")[0] for line in lines[header + 1:] if line.strip()}


def dvc_outputs(*stages: str) -> set[str]:
    """Every out upstream of `stages`, as DVC itself resolves dvc.yaml (`dvc dag --outs`)."""
    outs: set[str] = set()
    for stage in stages:
        result = _run(str(BIN / "dvc"), "dag", "--outs", "--dot", stage)
        assert result.returncode == 0, result.stderr
        outs |= {line.strip().rstrip(";").strip('"') for line in result.stdout.splitlines() if line.startswith('"')
                 and "->" not in line}
    return outs


def dvc_stage_outputs(profile: str) -> set[str]:
    """Every out, metric and plot of the profile's stages in dvc.yaml."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    outs = set()
    for name, stage in stages.items():
        if name.startswith(f"{profile}-"):
            for kind in ("outs", "metrics", "plots"):
                outs |= {next(iter(entry)) if isinstance(entry, dict) else entry for entry in stage.get(kind, [])}
    return outs


def without_training_state(paths: set[str]) -> set[str]:
    """Drop each run's snapshots/ and dvclive/: DVC tracks them as persistent outs, Snakemake leaves
    them undeclared; both so that a crashed training job keeps them and its rerun resumes."""
    return {path for path in paths if not path.endswith(("/snapshots", "/dvclive"))}


def test_dvc_yaml_is_current():
    result = _run(str(BIN / "pdd"), "params", "dvc", "--check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_table1_dag_is_the_same_in_snakemake_and_dvc(profile):
    tables = load_params(REPO / "params.yaml", profile=profile).paths.tables
    snakemake = snakemake_outputs(f"{tables}/table1.tex", profile=profile)
    dvc = dvc_outputs(f"{profile}-table1")
    assert snakemake == without_training_state(dvc)


@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_whole_pipeline_names_the_same_outputs(profile):
    params = load_params(REPO / "params.yaml", profile=profile)
    extra = [*REPORT_OUTPUTS, "figures", "explain"]
    targets = [f"{params.paths.tables}/{name}" for name in [*(f"{t}.tex" for t in params.plan), *extra]]
    assert snakemake_outputs(*targets, profile=profile) == without_training_state(dvc_stage_outputs(profile))


def test_paper_table1_dry_run_lists_exactly_its_runs_and_their_preparation():
    params = load_params(REPO / "params.yaml")
    runs = params.plan_runs("table1")
    datasets = {run.dataset for run in runs}
    expected = {f"{params.paths.tables}/table1.tex"}
    expected |= {str(params.raw_dir(name)) for name in datasets} | {str(params.prepared_dir(name)) for name in datasets}
    rd4ad_teacher = params.teachers_of("rd4ad").wrn50.file  # torchvision's WRN50, RD4AD's own
    expected |= {params.teachers.vmamba.file, params.teachers.wrn50.file, rd4ad_teacher}
    for run in runs:
        run_dir = params.run_dir(*run)
        expected |= {f"{run_dir}/trained.json", f"{run_dir}/metrics.json"}
    assert snakemake_outputs(f"{params.paths.tables}/table1.tex") == expected
    dry_run = _run(str(BIN / "snakemake"), "-n", "--nolock", f"{params.paths.tables}/table1.tex")
    assert dry_run.returncode == 0, dry_run.stderr
    # the four RD4AD re-runs beside the four PDD runs, each reading only the teacher files it loads
    assert sorted(run.variant for run in runs) == ["full"] * 4 + ["rd4ad"] * 4
    assert re.search(rf"^train +{len(runs)}$", dry_run.stdout, re.MULTILINE)
    trainings = {block.split("output: ")[1].split("\n")[0]: block.split("input: ")[1].split("\n")[0]
                 for block in dry_run.stdout.split("rule ")[1:] if block.startswith("train:")}
    for run in runs:
        inputs = trainings[f"{params.run_dir(*run)}/trained.json"].split(", ")
        weights = [rd4ad_teacher] if run.variant == "rd4ad" else [params.teachers.vmamba.file,
                                                                  params.teachers.wrn50.file]
        assert inputs == [str(params.prepared_dir(run.dataset)), *weights]
    table2 = snakemake_outputs(f"{params.paths.tables}/table2.tex")
    assert f"{params.run_dir('unimedical', 'rd4ad', 'code', 0)}/metrics.json" in table2


def test_bad_params_stop_snakemake_before_any_job():
    result = _run(str(BIN / "snakemake"), "-n", "--nolock", "--config", 'set=["train.lr=0"]')
    assert result.returncode != 0
    assert "train.lr:" in result.stdout + result.stderr


def test_slurm_profile_dry_run_asks_gpus_for_training():
    result = _run(str(BIN / "snakemake"), "-n", "--nolock", "--profile", "workflow/profiles/slurm",
                  "paper_tables/table1.tex")
    assert result.returncode == 0, result.stderr
    train_jobs = [block for block in result.stdout.split("rule ")[1:] if block.startswith("train:")]
    assert len(train_jobs) == 8  # PDD and the RD4AD re-run on four datasets
    assert all("slurm_partition=gpu" in job and "gpu=1" in job for job in train_jobs)
