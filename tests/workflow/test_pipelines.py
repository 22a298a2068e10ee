"""Real pipeline runs in a scratch copy of the repository: Snakemake and DVC build the same Table 1,
and the paper profile stops at the first data job with that dataset's instructions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
# the smallest demo that still exercises every job of Table 1
TINY_DEMO = {
    "data.image_size": 32,
    "data.synthetic.size": 32,
    "data.synthetic.n_train": 4,
    "data.synthetic.n_test": 2,
    "train.epochs": 1,
    "train.batch_size": 4,
    "eval.batch_size": 4,
}
DEMO_OUTPUTS = ("results/demo", "data/demo", "paper_tables/demo")


def _run(*command: str, cwd: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def scratch_repo(tmp_path) -> Path:
    """The working tree's source files (what a fresh clone has) in a new git repository."""
    listed = _run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout.split("\n")
    copy = tmp_path / "repo"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not name.startswith(("results/", "paper_tables/demo/")):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for command in (("git", "init", "-q"), ("git", "add", "-A"),
                    ("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scratch")):
        assert _run(*command, cwd=copy).returncode == 0
    return copy


def _tiny_demo(repo: Path) -> None:
    params_file = repo / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["profiles"]["demo"].update(TINY_DEMO)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    assert _run(str(BIN / "pdd"), "params", "dvc", cwd=repo).returncode == 0


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.slow
def test_snakemake_and_dvc_build_the_same_demo_table1(scratch_repo):
    _tiny_demo(scratch_repo)
    table1 = scratch_repo / "paper_tables/demo/table1.tex"
    _ok(_run(str(BIN / "snakemake"), "--cores", "2", "paper_tables/demo/table1.tex", "--config", "profile=demo",
             cwd=scratch_repo))
    by_snakemake = table1.read_text()
    assert "demo" in by_snakemake.lower()
    _ok(_run(str(BIN / "snakemake"), "paper_tables/demo/table1.tex", "--report", "report.html", "--config",
             "profile=demo", cwd=scratch_repo))
    assert (scratch_repo / "report.html").stat().st_size > 0
    for output in DEMO_OUTPUTS:
        shutil.rmtree(scratch_repo / output)
    _ok(_run(str(BIN / "dvc"), "repro", "demo-table1", cwd=scratch_repo))
    assert table1.read_text() == by_snakemake
    status = _run(str(BIN / "dvc"), "status", "demo-table1", cwd=scratch_repo)
    assert status.returncode == 0 and "up to date" in status.stdout


@pytest.mark.slow
def test_paper_profile_without_data_stops_at_the_first_data_job(scratch_repo):
    result = _run(str(BIN / "snakemake"), "--cores", "1", "paper_tables/table1.tex", cwd=scratch_repo, timeout=600)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Error in rule download" in output
    assert "get the raw data one of these ways" in output  # the dataset's own instructions, from its log
    assert not list((scratch_repo / "results").glob("*/*/*/seed*/checkpoints"))


@pytest.mark.slow
def test_present_raw_data_is_prepared_by_the_workflow(scratch_repo, shared_headct):
    (scratch_repo / "data/raw").mkdir(parents=True)
    (scratch_repo / "data/raw/headct").symlink_to(shared_headct, target_is_directory=True)
    _ok(_run(str(BIN / "snakemake"), "--cores", "1", "data/prepared/headct", cwd=scratch_repo, timeout=600))
    assert (scratch_repo / "data/prepared/headct/split.csv").is_file()


# An edit and the jobs it must rerun: those whose own params changed (`direct`), then everything downstream
RERUN_CASES = {
    "eval.aupro_fpr_limit": (0.2, {"evaluate"}, {"evaluate", "table", "replication_gap"}),
    "train.lr": (0.001, {"train"}, {"train", "evaluate", "table", "replication_gap"}),
    "reporting.gap_tolerance": (0.05, {"replication_gap"}, {"replication_gap"}),
    "eval.sigma": (3.0, {"evaluate"}, {"evaluate", "table", "replication_gap"}),  # last: the test then runs it
}


def _job_kind(stage: str) -> str:
    """The job a DVC stage (`demo-train-headct-...`, `demo-table1`, `demo-replication_gap`) runs."""
    job = stage.removeprefix("demo-")
    return {"table1": "table", "replication_gap": "replication_gap"}.get(job) or job.split("-")[0]


def _edited(repo: Path, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    section, name = key.split(".")
    params[section][name] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_both_engines_rerun_exactly_the_jobs_an_edit_invalidates(scratch_repo):
    """Table 1 and the gap table (a plan of Table 1 only), built by Snakemake, then by DVC; after each edit both
    name the same jobs as changed, and an evaluation or reporting edit never reaches training."""
    params = yaml.safe_load((scratch_repo / "params.yaml").read_text())
    params["plan"] = {"table1": params["plan"]["table1"]}  # its four runs, no other table's
    params["reporting"].update(figure_runs=[], explain_datasets=["headct"])
    params["profiles"]["demo"].update(TINY_DEMO)
    (scratch_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _ok(_run(str(BIN / "pdd"), "params", "dvc", cwd=scratch_repo))
    for command in (("git", "add", "-A"), ("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "plan")):
        _ok(_run(*command, cwd=scratch_repo))
    original = (scratch_repo / "params.yaml").read_text()
    targets = ["paper_tables/demo/table1.tex", "paper_tables/demo/replication_gap.md"]
    snakemake = [str(BIN / "snakemake"), "--cores", "2", *targets, "--config", "profile=demo"]
    _ok(_run(*snakemake, cwd=scratch_repo))
    run_dir = scratch_repo / "results/demo/headct/full/code/seed0"
    trained = {path.name: path.stat().st_ino for path in (run_dir / "snapshots").iterdir()}
    trained["trained.json"] = (run_dir / "trained.json").stat().st_mtime_ns
    evaluated_under = json.loads((run_dir / "metrics.json").read_text())["provenance"]["fingerprints"]

    def snakemake_jobs() -> tuple[set[str], set[str]]:
        """(jobs rerun because their own params changed, every job a run would execute), from `snakemake -n`."""
        result = _run(*snakemake, "-n", cwd=scratch_repo)
        _ok(result)
        blocks = [block for block in result.stdout.split("\n\n") if "rule " in block and "reason:" in block]
        rule = {block: block.split("rule ", 1)[1].split(":", 1)[0] for block in blocks}
        kind = {"train": "train", "evaluate": "evaluate", "table": "table", "replication_gap": "replication_gap"}
        direct = {kind[rule[block]] for block in blocks if "Params have changed" in block}
        return direct, {kind[rule[block]] for block in blocks}

    assert _run(*snakemake, "-n", cwd=scratch_repo).stdout.count("Nothing to be done") == 1
    for key, (value, direct, everything) in RERUN_CASES.items():
        _edited(scratch_repo, key, value)
        assert snakemake_jobs() == (direct, everything), key
        if key == "eval.sigma":  # really run it: evaluation reruns, training and its snapshot stay untouched
            _ok(_run(*snakemake, cwd=scratch_repo))
            after = {path.name: path.stat().st_ino for path in (run_dir / "snapshots").iterdir()}
            assert {**after, "trained.json": (run_dir / "trained.json").stat().st_mtime_ns} == trained
            now = json.loads((run_dir / "metrics.json").read_text())["provenance"]["fingerprints"]
            assert now["train"] == evaluated_under["train"] and now["evaluate"] != evaluated_under["evaluate"]
        (scratch_repo / "params.yaml").write_text(original)

    for output in DEMO_OUTPUTS:
        shutil.rmtree(scratch_repo / output)
    _ok(_run(str(BIN / "dvc"), "repro", "demo-table1", "demo-replication_gap", cwd=scratch_repo))
    for key, (value, direct, _) in RERUN_CASES.items():
        _edited(scratch_repo, key, value)
        status = _run(str(BIN / "dvc"), "status", "--json", "--with-deps", "demo-table1", "demo-replication_gap",
                      cwd=scratch_repo)
        _ok(status)
        assert {_job_kind(stage) for stage in json.loads(status.stdout)} == direct, key
        (scratch_repo / "params.yaml").write_text(original)
