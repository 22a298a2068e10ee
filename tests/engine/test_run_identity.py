"""One run identity: an evaluation edit never retrains, evaluation re-scores every snapshot under the
current settings, and a run is evaluated as it was trained (with provenance from what was loaded)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from pdd.config import RunSpec
from pdd.engine.results import read_epoch_evaluation, read_metrics
from pdd.errors import WeightsError
from pdd.io import sha256_file

pytestmark = pytest.mark.slow
SPEC = RunSpec("headct", "full", "code", 0)


def _copy_run(source: Path, target: Path) -> Path:
    """A copy of a completed run whose snapshots are hard links (a rewrite would show as a new inode)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("snapshots", ".lock"))
    (target / "snapshots").mkdir()
    for snapshot in (source / "snapshots").iterdir():
        os.link(snapshot, target / "snapshots" / snapshot.name)
    return target


def _snapshot_inodes(run_dir: Path) -> dict[str, int]:
    return {path.name: path.stat().st_ino for path in (run_dir / "snapshots").iterdir()}


def test_an_eval_edit_retrains_nothing_and_deletes_nothing(baseline_run, engine_workspace, tmp_path):
    run_dir = _copy_run(baseline_run["run_dir"], tmp_path / "run")
    before, marker = _snapshot_inodes(run_dir), (run_dir / "trained.json").read_bytes()
    rerun, _ = engine_workspace.run(*engine_workspace.train_args(run_dir, "eval.sigma=3.0"), "--resume",
                                    "--restart-if-changed")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already complete" in rerun.stderr
    assert _snapshot_inodes(run_dir) == before and (run_dir / "trained.json").read_bytes() == marker

    retrain, _ = engine_workspace.run(*engine_workspace.train_args(run_dir, "train.lr=0.001"), "--resume")
    assert retrain.returncode == 2 and "another identity (train_fingerprint differ" in retrain.stderr
    assert _snapshot_inodes(run_dir) == before, "a refused restart keeps the run"


def test_rescoring_after_an_eval_edit_selects_among_snapshots_scored_under_the_new_settings(baseline_run,
                                                                                           engine_workspace, tmp_path):
    run_dir = _copy_run(baseline_run["run_dir"], tmp_path / "run")
    # an epoch-1 evaluation made under other settings, flattering enough to win any selection it enters
    stale = json.loads((run_dir / "eval" / "epoch_001.json").read_text())
    for scoring in stale["metrics"].values():
        scoring["pooled"]["image_AUROC"] = 1.0
    (run_dir / "eval" / "epoch_001.json").write_text(json.dumps(stale))

    evaluated, _ = engine_workspace.run(*engine_workspace.evaluate_args(run_dir), "--set", "eval.sigma=1.0")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    document = read_metrics(run_dir / "metrics.json")
    new_settings = document["provenance"]["fingerprints"]
    baseline = read_metrics(baseline_run["run_dir"] / "metrics.json")
    assert new_settings["evaluate"] != baseline["provenance"]["fingerprints"]["evaluate"]
    per_epoch = {epoch: read_epoch_evaluation(run_dir / "eval" / f"epoch_{epoch:03d}.json") for epoch in (1, 2)}
    assert all(evaluation["evaluated_with"] == new_settings for evaluation in per_epoch.values())
    for scoring, results in document["metrics"].items():
        aurocs = {epoch: e["metrics"][scoring]["pooled"]["image_AUROC"] for epoch, e in per_epoch.items()}
        assert 1.0 not in aurocs.values(), "the stale evaluation was re-scored, not reused"
        assert results["best_of_test"]["epoch"] == min(e for e, v in aurocs.items() if v == max(aurocs.values()))
        assert results["last"]["pooled"]["pixel_AUROC"] != baseline["metrics"][scoring]["last"]["pooled"]["pixel_AUROC"]

    again, _ = engine_workspace.run(*engine_workspace.evaluate_args(run_dir), "--set", "eval.sigma=1.0")
    assert again.returncode == 0 and "epoch 1: reusing" in again.stderr  # same settings: nothing re-scored
    assert read_metrics(run_dir / "metrics.json")["metrics"] == document["metrics"]


def test_keep_snapshots_selected_prunes_what_no_selection_chose(baseline_run, engine_workspace, tmp_path):
    run_dir = _copy_run(baseline_run["run_dir"], tmp_path / "run")
    evaluated, _ = engine_workspace.run(*engine_workspace.evaluate_args(run_dir), "--set", "train.keep_snapshots=selected")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = read_metrics(run_dir / "metrics.json")["metrics"]
    chosen = {results[name]["epoch"] for results in metrics.values() for name in ("last", "best_of_test")}
    assert {int(p.stem.split("_")[1]) for p in (run_dir / "snapshots").iterdir()} == chosen
    assert (baseline_run["run_dir"] / "snapshots" / "epoch_001.safetensors").is_file(), "the original keeps its own"


def test_an_evaluation_edit_after_pruning_names_the_snapshots_it_could_not_score(baseline_run, tmp_path, caplog):
    """`keep_snapshots: selected` deleted epoch 1's snapshot: an `eval.*` edit says epoch 1 is gone instead of
    selecting among the others silently (under unchanged settings epoch 1's scores would be reused)."""
    from pdd.engine import evaluate_run

    run_dir = _copy_run(baseline_run["run_dir"], tmp_path / "run")
    (run_dir / "snapshots" / "epoch_001.safetensors").unlink()  # what pruning leaves when epoch 2 is chosen
    edited = evaluate_run(run_dir, overrides=["eval.sigma=3.0"], progress=False)["provenance"]
    assert (edited["snapshots_scored"], edited["snapshots_missing"]) == ([2], [1])
    assert "the snapshots of epochs 1 are gone" in caplog.text and "chosen among epochs 2 only" in caplog.text
    assert read_metrics(run_dir / "metrics.json")["provenance"]["snapshots_missing"] == [1]


def test_a_training_edit_after_training_is_named_and_not_applied(baseline_run, engine_workspace, tmp_path):
    run_dir = _copy_run(baseline_run["run_dir"], tmp_path / "run")
    evaluated, _ = engine_workspace.run(*engine_workspace.evaluate_args(run_dir), "--set", "teachers.init_seed=1")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "teachers.init_seed (trained: 0, now: 1)" in evaluated.stderr
    document = read_metrics(run_dir / "metrics.json")
    assert document["provenance"]["params_not_applied"] == ["teachers.init_seed (trained: 0, now: 1)"]
    # evaluated with the recorded teachers: other teachers would give other scores
    assert document["metrics"] == read_metrics(baseline_run["run_dir"] / "metrics.json")["metrics"]


def test_an_old_layout_run_directory_is_refused_with_what_to_do(engine_workspace, tmp_path):
    run_dir = tmp_path / "old"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"dataset": "headct", "variant": "full"}))
    torch.save({"format": 1, "epoch": 2}, run_dir / "checkpoints" / "epoch_002.pt")
    for args in (engine_workspace.evaluate_args(run_dir), [*engine_workspace.train_args(run_dir), "--resume",
                                                          "--restart-if-changed"]):
        result, _ = engine_workspace.run(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "earlier pdd (run layout 1" in result.stderr and "move the directory aside" in result.stderr
    assert (run_dir / "checkpoints" / "epoch_002.pt").is_file(), "nothing of the old run is deleted"


def test_teacher_provenance_is_hashed_from_the_loaded_weights(engine_workspace, tmp_path, monkeypatch):
    """Pretrained teachers (a local WRN50 file): provenance is the file's fresh sha256, and evaluating with
    other weights under the same path is refused."""
    import timm

    import pdd.models.teachers as teachers
    from pdd.engine import evaluate_run, train_run

    real_spec = teachers.wrn50_weights_spec
    monkeypatch.setattr(teachers, "wrn50_weights_spec", lambda tag: dataclasses.replace(real_spec(tag), sha256=None))
    weights = tmp_path / "wrn50.pth"

    def write_weights(seed: int) -> None:
        torch.manual_seed(seed)
        torch.save(timm.create_model("wide_resnet50_2", pretrained=False).state_dict(), weights)

    write_weights(0)
    params = engine_workspace.params("teachers.pretrained=true", f"teachers.wrn50.file={weights}",
                                     "data.image_size=32", "train.epochs=1", f"paths.cache={tmp_path / 'cache'}")
    run_dir = tmp_path / "m1"
    train_run(params, RunSpec("headct", "M1", "code", 0), run_dir, params_file=engine_workspace.params_file,
              overrides=engine_workspace.overrides("teachers.pretrained=true", f"teachers.wrn50.file={weights}",
                                                   "data.image_size=32", "train.epochs=1",
                                                   f"paths.cache={tmp_path / 'cache'}"), progress=False)
    document = evaluate_run(run_dir, engine_workspace.params_file, progress=False)
    assert document["provenance"]["teacher_weights"] == {"wrn50": sha256_file(weights)}
    assert document["run"]["demo"] is True  # synthetic data

    write_weights(1)  # other weights at the recorded path
    with pytest.raises(WeightsError, match="not those .* was trained with"):
        evaluate_run(run_dir, engine_workspace.params_file, progress=False)


def test_a_run_stays_evaluable_when_a_later_pdd_reads_other_training_keys(baseline_run, engine_workspace, tmp_path,
                                                                          monkeypatch):
    """The snapshots carry the train fingerprint they were trained under; evaluation matches them against the
    record, not against what this version of `pdd.config.fingerprints` would compute."""
    import pdd.config.fingerprints as fingerprints
    from pdd.engine import evaluate_run

    run_dir = _copy_run(baseline_run["run_dir"], tmp_path / "run")
    real_train_keys = fingerprints.train_keys
    monkeypatch.setattr(fingerprints, "train_keys", lambda params, run: real_train_keys(params, run)[:-1])
    document = evaluate_run(run_dir, engine_workspace.params_file, progress=False)
    recorded = json.loads((run_dir / "run.json").read_text())["identity"]["train_fingerprint"]
    assert document["provenance"]["fingerprints"]["train"] == recorded
    assert document["metrics"] == read_metrics(baseline_run["run_dir"] / "metrics.json")["metrics"]


def test_every_epoch_evaluation_keeps_its_per_image_scores(baseline_run, engine_workspace, tmp_path):
    """What export calibrates from and predict must reproduce; an evaluation without them is scored again."""
    import csv

    run_dir = baseline_run["run_dir"]
    final = read_epoch_evaluation(run_dir / "eval" / "epoch_002.json")["images"]
    with open(run_dir / "scores_ts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert final["paths"] == [row["path"] for row in rows]
    assert final["labels"] == [int(row["label"]) for row in rows]
    assert final["scores"]["ts"] == [float(row["score"]) for row in rows]

    copy = _copy_run(run_dir, tmp_path / "run")
    earlier = json.loads((copy / "eval" / "epoch_001.json").read_text())
    del earlier["images"]  # as an earlier pdd wrote it
    (copy / "eval" / "epoch_001.json").write_text(json.dumps(earlier))
    evaluated, _ = engine_workspace.run(*engine_workspace.evaluate_args(copy))
    assert evaluated.returncode == 0 and "epoch 1: reusing" not in evaluated.stderr
    assert read_epoch_evaluation(copy / "eval" / "epoch_001.json")["images"] == \
        read_epoch_evaluation(run_dir / "eval" / "epoch_001.json")["images"]
