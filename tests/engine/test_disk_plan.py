"""`pdd params plan --disk` against the bytes a real small run writes (within 10 %)."""

from __future__ import annotations

import json

import pytest
import torch

from pdd.config import RunSpec
from pdd.engine.disk import plan_disk
from tests.processes import run_pdd

pytestmark = pytest.mark.slow
SPEC = RunSpec("headct", "full", "code", 0)


def measured_bytes(directory) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def test_the_disk_plan_matches_a_real_run_within_ten_percent(engine_workspace, tmp_path, monkeypatch):
    import pdd.engine.train as train
    from pdd.engine import evaluate_run, train_run

    overrides = ("data.image_size=32", f"paths.cache={tmp_path / 'cache'}", "train.cache_fp16=true")
    params = engine_workspace.params(*overrides)
    written_checkpoints = []
    real_save = train.save_checkpoint

    def recording_save(path, state, epoch):
        real_save(path, state, epoch)
        written_checkpoints.append(path.stat().st_size)

    monkeypatch.setattr(train, "save_checkpoint", recording_save)
    run_dir = tmp_path / "run"
    train_run(params, SPEC, run_dir, params_file=engine_workspace.params_file,
              overrides=engine_workspace.overrides(*overrides), progress=False)
    evaluate_run(run_dir, engine_workspace.params_file, progress=False)  # caches the test images' features too

    plan = plan_disk(params, [SPEC])
    run, = plan.runs
    assert run.snapshots_written == 2 and run.snapshots_kept_at_most == 2  # eval_every 1, keep all
    assert run.kept_bytes == pytest.approx(measured_bytes(run_dir / "snapshots"), rel=0.10)
    assert written_checkpoints and run.checkpoint_bytes == pytest.approx(written_checkpoints[0], rel=0.10)
    cache, = plan.caches
    assert cache.images == 16 and cache.dtype == "float16"
    assert cache.total == pytest.approx(measured_bytes(tmp_path / "cache" / "teacher_features"), rel=0.10)
    pixels, = plan.pixels
    assert (pixels.images, pixels.masks) == (16, 4)
    assert pixels.total == pytest.approx(measured_bytes(tmp_path / "cache" / "pixels"), rel=0.10)


def test_plan_disk_on_the_command_line_prints_per_run_and_total_figures(repo_root):
    result = run_pdd(["params", "plan", "--disk", "--json", "--table", "table4", "--profile", "demo"], cwd=repo_root)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads(result.stdout)
    assert [run["id"] for run in plan["runs"]] == ["brainmri/full/code/seed0", "brainmri/full-nodiv/code/seed0"]
    # the demo keeps one snapshot per run: `full`'s trainable modules in fp32
    assert all(run["snapshots_written"] == 1 and 120e6 < run["snapshot_bytes"] < 125e6 for run in plan["runs"])
    totals = plan["totals"]
    assert totals["after_the_plan"] == totals["snapshots"] + totals["teacher_cache"] + totals["ready_pixels"]
    assert [pixels["dataset"] for pixels in plan["ready_pixels"]] == ["brainmri"]
    selected = run_pdd(["params", "plan", "--disk", "--table", "table4",
                        "--set", "data.datasets.brainmri.teacher_cache=false"], cwd=repo_root)
    assert selected.returncode == 0 and "brainmri (wrn50.racm_in1k+vmamba)" not in selected.stdout
    assert "after the plan completes" in selected.stdout


def test_the_cache_dtype_follows_the_fidelity_unless_set_and_the_plan_counts_each(engine_workspace, tmp_path):
    """`train.cache_fp16: null`: exact fp32 features under `code`, fp16 under `paper`; training, evaluation
    and the disk plan read the one resolver."""
    from pdd.engine.disk import CACHE_OVERHEAD_PER_ENTRY
    from pdd.engine.rundir import RunDir
    from pdd.engine.runs import RunContext

    paper = RunSpec("headct", "full", "paper", 0)
    params = engine_workspace.params("data.image_size=32", "train.cache_fp16=null", f"paths.cache={tmp_path}")
    plan = plan_disk(params, [SPEC, paper])
    caches = {cache.dtype: cache.bytes_per_image - CACHE_OVERHEAD_PER_ENTRY for cache in plan.caches}
    assert caches.keys() == {"float32", "float16"} and caches["float32"] == 2 * caches["float16"]
    context = RunContext(params, SPEC, RunDir(tmp_path / "run"))
    assert context.teacher_cache(context.build_model()).dtype == torch.float32

    explicit = engine_workspace.params("data.image_size=32", "train.cache_fp16=true", f"paths.cache={tmp_path}")
    assert [cache.dtype for cache in plan_disk(explicit, [SPEC, paper]).caches] == ["float16"]
    assert explicit.cache_dtype("code") == "float16"
