"""Training killed, out of disk, diverging or raced: it resumes to the same metrics, losses and weights as an
uninterrupted run (a half-trained run is neither evaluated nor restarted without --resume), and no partial checkpoint, metrics.json or per-epoch evaluation ever sits under its final name.

Faults are injected at the operating-system boundary of a real `pdd` process (faults/sitecustomize.py)
and the process is killed with SIGKILL, so nothing in the code under test gets a chance to clean up.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from pdd.engine.checkpoint import load_checkpoint
from pdd.engine.results import read_metrics
from pdd.models.state import load_snapshot

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.schedule_first]

PDD = [sys.executable, "-m", "pdd"]
# 8 training images in batches of 4: dvclive writes its metrics.json after every step, the 3rd time after
# epoch 2's first step (images are read once, into the ready pixels, before epoch 1)
MID_EPOCH_2 = {"at": "open", "match": "dvclive/metrics.json", "writing": True, "nth": 3}
# epoch 1's second batch of teacher features: its shard complete under a temporary name, not yet renamed
INSIDE_SHARD_WRITE = {"at": "replace", "match": "/shard-", "nth": 2}
# in a process resumed after epoch 1, the last epoch's write: its weights snapshot (temp file complete)
FINAL_SNAPSHOT = "epoch_002.safetensors"
INSIDE_CHECKPOINT_WRITE = {"at": "replace", "match": FINAL_SNAPSHOT, "nth": 1}
DISK_FULL_AT_CHECKPOINT = {"at": "open", "match": f".{FINAL_SNAPSHOT}.", "writing": True, "nth": 1, "do": "enospc"}


def _epoch(run_dir: Path) -> int:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"]


def _assert_final_names_are_whole(run_dir: Path) -> None:
    """Whatever carries a final name is complete: every checkpoint and snapshot loads, every JSON parses."""
    for path in (run_dir / "checkpoints").glob("*.pt"):
        load_checkpoint(path)
    for path in (run_dir / "snapshots").glob("*.safetensors"):
        load_snapshot(path)
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())
    assert not (run_dir / "metrics.json").exists()


def _losses(run_dir: Path) -> dict[str, list[list[str]]]:
    return {path.stem: list(csv.reader(path.open(), delimiter="\t"))
            for path in sorted((run_dir / "dvclive/plots/metrics/train").glob("*.tsv"))}


def test_killed_and_disk_full_runs_resume_to_the_same_metrics(workspace, baseline_run, procs, tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    own_cache = f"paths.cache={tmp_path / 'cache'}"  # the session's cache has every image's features already
    train = [*PDD, *workspace.train_args(run_dir, own_cache)]
    resume = [*PDD, *workspace.train_args(run_dir, own_cache, resume=True)]

    killed = procs.kill_at_fault(train, INSIDE_SHARD_WRITE, marker)
    assert killed.returncode == -9 and not (run_dir / "checkpoints" / "last.pt").exists()
    [cache] = (tmp_path / "cache" / "teacher_features").glob("*/key.json")
    assert list(cache.parent.glob(".shard-*.tmp")), "the kill landed inside the write; the next run never reads it"

    killed = procs.kill_at_fault(train, MID_EPOCH_2, marker)
    assert killed.returncode == -9
    assert _epoch(run_dir) == 1
    _assert_final_names_are_whole(run_dir)
    _as_if_saved_on_two_gpus(run_dir / "checkpoints" / "last.pt")
    unfinished = procs.run_pdd(*workspace.evaluate_args(run_dir))
    assert unfinished.returncode == 2 and "finished 1 of 2 epochs" in unfinished.stderr, unfinished.stderr[-3000:]
    not_resumed = procs.run_pdd(*workspace.train_args(run_dir, own_cache))
    assert not_resumed.returncode == 2 and "--resume" in not_resumed.stderr, not_resumed.stderr[-3000:]

    full = procs.run(resume, faults=[DISK_FULL_AT_CHECKPOINT])
    assert full.returncode == 2, full.stderr[-3000:]
    assert "no space left on the device while writing" in full.stderr and FINAL_SNAPSHOT in full.stderr
    assert "Traceback" not in full.stderr
    assert _epoch(run_dir) == 1
    _assert_final_names_are_whole(run_dir)

    killed = procs.kill_at_fault(resume, INSIDE_CHECKPOINT_WRITE, marker)
    assert killed.returncode == -9
    assert _epoch(run_dir) == 1 and not (run_dir / "snapshots" / FINAL_SNAPSHOT).exists(), \
        "the new snapshot was complete but must not have taken the final name"
    assert list((run_dir / "snapshots").glob(f".{FINAL_SNAPSHOT}.*.tmp")), "the kill landed inside the write"
    _assert_final_names_are_whole(run_dir)

    finished = procs.run_pdd(*workspace.train_args(run_dir, own_cache, resume=True))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert not list(run_dir.rglob(".*.tmp")), "the resumed run removes the orphaned temporary"
    assert (run_dir / "trained.json").is_file() and not (run_dir / "checkpoints" / "last.pt").exists()
    evaluated = procs.run_pdd(*workspace.evaluate_args(run_dir))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]

    assert read_metrics(run_dir / "metrics.json")["metrics"] == read_metrics(baseline_run / "metrics.json")["metrics"]
    assert _losses(run_dir) == _losses(baseline_run)
    # each of the three resumes on this GPU-less machine said what it could not restore, and run.json keeps all
    assert "GPU(s) 0, 1 were not restored" in finished.stderr
    notes = json.loads((run_dir / "run.json").read_text())["resume_notes"]
    assert len(notes) == 3 and all(note.startswith("resumed after epoch 1 on cpu: ") and
                                   "GPU(s) 0, 1 were not restored" in note for note in notes), notes
    for epoch in (1, 2):
        resumed, uninterrupted = (load_snapshot(d / "snapshots" / f"epoch_{epoch:03d}.safetensors")[0]
                                  for d in (run_dir, baseline_run))
        assert resumed.keys() == uninterrupted.keys()
        assert all(torch.equal(resumed[key], uninterrupted[key]) for key in uninterrupted), f"epoch {epoch}"


def _as_if_saved_on_two_gpus(checkpoint: Path) -> None:
    """The checkpoint a machine with 2 GPUs would have written, training on its GPU 1 (the CUDA RNG states are
    opaque byte tensors; no GPU here ever reads them)."""
    state = torch.load(checkpoint, weights_only=True)
    state["rng"]["cuda"] = [torch.full((16,), index, dtype=torch.uint8) for index in range(2)]
    state["rng"]["cuda_device"] = 1
    torch.save(state, checkpoint)


def test_disk_full_while_writing_metrics_keeps_the_previous_file(workspace, baseline_run, procs):
    before = (baseline_run / "metrics.json").read_bytes()
    full = procs.run_pdd(*workspace.evaluate_args(baseline_run),
                         faults=[{"at": "open", "match": ".metrics.json.", "writing": True, "nth": 1, "do": "enospc"}])
    assert full.returncode == 2 and "no space left on the device while writing" in full.stderr
    assert "metrics.json" in full.stderr and "Traceback" not in full.stderr
    assert (baseline_run / "metrics.json").read_bytes() == before
    assert not list(baseline_run.glob(".metrics.json.*"))


def test_a_second_process_on_a_live_run_is_refused(workspace, procs, tmp_path):
    """Two CLI runs (no Snakemake) on one results path: the second stops at once, the first is untouched."""
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    first, _ = procs.start_paused([*PDD, *workspace.train_args(run_dir)], MID_EPOCH_2, marker)
    try:
        record = (run_dir / "run.json").read_bytes()
        for second in (procs.run_pdd(*workspace.train_args(run_dir)),
                       procs.run_pdd(*workspace.train_args(run_dir, resume=True)),
                       procs.run_pdd(*workspace.evaluate_args(run_dir))):
            assert second.returncode == 2, second.stderr[-3000:]
            assert "in use by another live pdd process" in second.stderr and "Traceback" not in second.stderr
        assert (run_dir / "run.json").read_bytes() == record
        assert _epoch(run_dir) == 1 and not (run_dir / "metrics.json").exists()
    finally:
        first.kill()
        first.communicate()


def test_a_diverging_loss_stops_and_keeps_the_last_good_checkpoint(workspace, procs, tmp_path):
    """lr = 1e30: epoch 1 (one step of 8 images) is finite, then the weights explode and epoch 2's loss is not."""
    run_dir = tmp_path / "run"
    result = procs.run_pdd(*workspace.train_args(run_dir, "train.batch_size=8", "train.lr=1.0e+30", "train.eta_min=0"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "the loss became non-finite" in result.stderr and "at epoch 2, step 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert _epoch(run_dir) == 1
    _assert_final_names_are_whole(run_dir)


def test_a_killed_snakemake_training_job_resumes_on_rerun(workspace, baseline_run, procs, tmp_path, repo_root):
    results = tmp_path / "results"
    run_dir = results / "headct/full/code/seed0"
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "-s", str(repo_root / "Snakefile"),
                 "--cores", str(procs.threads), "--set-threads", f"train={procs.threads}", f"evaluate={procs.threads}", "--config", f"params={repo_root / 'params.yaml'}", "profile=demo",
                 "set=" + json.dumps(workspace.overrides(f"paths.results={results}")),
                 f"pdd={sys.executable} -m pdd", "--", str(run_dir / "metrics.json")]

    killed = procs.kill_at_fault(snakemake, MID_EPOCH_2, tmp_path / "paused", cwd=tmp_path)
    assert killed.returncode != 0
    assert _epoch(run_dir) == 1, "the epoch-1 checkpoint must survive the failed job"

    rerun = procs.run(snakemake, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (results / "logs/train/headct/full/code/seed0.log").read_text()
    assert "resuming" in log and "after epoch 1" in log
    assert read_metrics(run_dir / "metrics.json")["metrics"] == read_metrics(baseline_run / "metrics.json")["metrics"]
