"""End to end: `pdd train` + `pdd evaluate` with the real model on real synthetic data (64x64, 2 epochs)."""

from __future__ import annotations

import csv
import json
import logging

import filelock
import numpy as np
import pytest
import torch
from safetensors import safe_open

from pdd.config import RunSpec
from pdd.engine.checkpoint import load_checkpoint
from pdd.engine.results import read_metrics
from pdd.engine.train import train_run
from pdd.errors import PDDError


pytestmark = pytest.mark.slow
SPEC = RunSpec("headct", "full", "code", 0)


def _losses(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every per-step series dvclive logged under train/ (loss terms and lr)."""
    series = {}
    for path in sorted((run_dir / "dvclive" / "plots" / "metrics" / "train").glob("*.tsv")):
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))[1:]
        series[path.stem] = [(int(step), float(value)) for step, value in rows]
    return series


def test_train_and_evaluate_write_a_valid_run(baseline_run, engine_workspace):
    run_dir = baseline_run["run_dir"]
    logging.getLogger(__name__).info("train %.1f s, evaluate %.1f s", baseline_run["train_seconds"],
                                     baseline_run["evaluate_seconds"])
    document = read_metrics(run_dir / "metrics.json")  # raises unless schema-valid

    assert document["run"]["demo"] is True and document["run"]["epochs"] == 2
    assert set(document["provenance"]["teacher_weights"].values()) == {"random-init"}
    # the teacher-cache decision, resolved for the device, is recorded by training and by evaluation
    assert json.loads((run_dir / "run.json").read_text())["teacher_cache"] is True
    assert document["provenance"]["evaluation"]["teacher_cache"] is True
    assert set(document["metrics"]) == {"ts", "ss"}  # `full` has two students
    for scoring in ("ts", "ss"):
        last, best = document["metrics"][scoring]["last"], document["metrics"][scoring]["best_of_test"]
        assert last["epoch"] == 2 and best["epoch"] in (1, 2)
        assert best["pooled"]["image_AUROC"] >= last["pooled"]["image_AUROC"]
        assert last["pooled"]["pixel_AUROC"] is not None  # the synthetic lesions have masks
        assert last["per_class"] == {}
        per_epoch = json.loads((run_dir / "eval" / "epoch_002.json").read_text())["metrics"][scoring]
        assert per_epoch["pooled"] == last["pooled"], "the final evaluation must repeat the last per-epoch one"

    with open(run_dir / "scores_ts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and sorted(int(r["label"]) for r in rows) == [0] * 4 + [1] * 4
    assert len({r["score"] for r in rows}) == 8, "every image has its own score"
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    from sklearn.metrics import roc_auc_score

    assert document["metrics"]["ts"]["last"]["pooled"]["image_AUROC"] == pytest.approx(roc_auc_score(labels, scores))

    assert not (run_dir / "checkpoints" / "last.pt").exists(), "a completed run keeps no optimizer state"
    assert sorted(p.name for p in (run_dir / "snapshots").iterdir()) == ["epoch_001.safetensors", "epoch_002.safetensors"]
    assert document["provenance"]["snapshots_scored"] == [1, 2]

    maps = np.load(run_dir / "maps" / "ts.npz")
    assert maps["images"].shape == (4, 64, 64, 3) and maps["images"].dtype == np.uint8
    assert maps["masks"].shape == maps["maps"].shape == (4, 64, 64) and maps["maps"].dtype == np.float32
    assert list(maps["labels"]) == [1, 1, 0, 0] and maps["masks"][:2].sum() > 0 and maps["masks"][2:].sum() == 0

    losses = _losses(run_dir)
    assert {"total", "L_kr", "L_prp", "L_div", "lr"} <= set(losses)
    assert [step for step, _ in losses["total"]] == [0, 1, 2, 3]
    assert losses["lr"][0][1] == pytest.approx(2e-3)


def test_teacher_cache_changes_no_loss(baseline_run, engine_workspace, tmp_path):
    baseline = baseline_run["run_dir"]
    cached_images = set()
    for shard in (engine_workspace.root / "cache" / "teacher_features").rglob("shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            cached_images.update(json.loads(handle.metadata()["images"]))
    assert len(cached_images) == 16, "the features of every train and test image, in shards"
    params = engine_workspace.params("train.teacher_cache=false", f"paths.cache={tmp_path / 'unused'}",
                                     "train.eval_every=5")  # evaluations do not change losses: skip epoch 1's
    train_run(params, SPEC, tmp_path / "uncached", params_file=engine_workspace.params_file, progress=False)
    assert not (tmp_path / "unused" / "teacher_features").exists()  # only the ready pixels went there
    uncached, cached = _losses(tmp_path / "uncached"), _losses(baseline)
    assert uncached.keys() == cached.keys()
    for name in cached:
        assert [s for s, _ in uncached[name]] == [s for s, _ in cached[name]]
        np.testing.assert_allclose([v for _, v in uncached[name]], [v for _, v in cached[name]], rtol=1e-6, atol=0)


def test_a_locked_run_directory_is_refused(engine_workspace, tmp_path):
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    with filelock.FileLock(run_dir / ".lock"):
        with pytest.raises(PDDError, match="in use by another live pdd process"):
            train_run(engine_workspace.params(), SPEC, run_dir, progress=False)


def test_a_non_finite_loss_stops_naming_epoch_and_step(engine_workspace, tmp_path, monkeypatch):
    from pdd.models.torch_model import PDDModel

    real_loss = PDDModel.loss_from_features
    calls = []

    def loss_that_explodes_in_epoch_two(self, features):
        terms = real_loss(self, features)
        calls.append(1)
        if len(calls) == 3:  # 2 steps per epoch: the first step of epoch 2
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(PDDModel, "loss_from_features", loss_that_explodes_in_epoch_two)
    run_dir = tmp_path / "nan"
    params = engine_workspace.params("train.eval_every=5")  # no evaluation: only the loss matters here
    with pytest.raises(PDDError, match=r"non-finite \(nan\) at epoch 2, step 1"):
        train_run(params, SPEC, run_dir, progress=False)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 1


def test_bf16_autocast_runs_the_student_side_in_bfloat16_on_the_cpu(engine_workspace, tmp_path, monkeypatch):
    """The engine's autocast path runs in every test run, not only on a GPU (CPU autocast supports bfloat16):
    the loss is computed under autocast from float32 teacher features, and the run records it."""
    from pdd.models.torch_model import PDDModel

    real_loss = PDDModel.loss_from_features
    seen = []

    def observed_loss(self, features):
        terms = real_loss(self, features)
        seen.append((torch.is_autocast_enabled("cpu"), {f.dtype for f in features.values()}, terms["total"].dtype))
        return terms

    monkeypatch.setattr(PDDModel, "loss_from_features", observed_loss)
    # one step of 8 images at 32²: bfloat16 convolutions are slow on a CPU
    params = engine_workspace.params("train.bf16_autocast=true", "train.epochs=1", "train.batch_size=8",
                                     "data.image_size=32", f"paths.cache={tmp_path / 'cache'}")
    train_run(params, SPEC, tmp_path / "bf16", params_file=engine_workspace.params_file, progress=False)
    assert seen == [(True, {torch.float32}, torch.float32)]  # autocast on; teachers and the summed loss float32
    record = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert record["numerics"] == {"tf32": False, "matmul": "ieee", "convolution": "ieee", "bf16_autocast": True}
    assert all(np.isfinite(value) for _, value in _losses(tmp_path / "bf16")["total"])
