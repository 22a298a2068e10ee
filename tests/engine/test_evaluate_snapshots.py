"""Evaluating many snapshots from test features read once gives every snapshot exactly its own scores and maps."""

from __future__ import annotations

import os
import shutil

import torch
from torch.utils.data import DataLoader

from pdd.data.dataset import PreparedDataset
from pdd.engine import evaluate, runs
from pdd.engine.results import read_epoch_evaluation, read_metrics
from pdd.engine.rundir import RunDir
from pdd.models.state import load_snapshot, load_trainable_state


def _scored_alone(model, context, epoch, scorings):
    """Scores of one snapshot the earlier way: images decoded, one students' pass per scoring (the teacher cache is
    bit-identical to the teachers: tests/engine/test_teacher_cache.py)."""
    load_trainable_state(model, load_snapshot(context.dir.snapshot(epoch))[0])
    dataset = PreparedDataset(context.prepared_root(), "test", context.params.data.image_size)
    cache, scores = context.teacher_cache(model), {s: [] for s in scorings}
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=context.params.eval.batch_size):
            features = cache.features(model.teacher_features, batch["image"], batch["sha256"])
            assert cache.misses == 0
            for scoring in scorings:
                scores[scoring] += [float(score) for score in model.anomaly_map(batch["image"], scoring, features)[1]]
    return scores


def test_snapshots_scored_together_get_the_scores_of_each_scored_alone(baseline_run, engine_workspace, tmp_path,
                                                                      monkeypatch):
    directory = RunDir(baseline_run["run_dir"])
    record = runs.RunRecord.read(directory)
    context = runs.RunContext(record.trained_params(), record.spec, directory)
    model = context.build_model().eval()
    monkeypatch.setattr(runs.RunContext, "build_model", lambda self: model)  # one model build for the whole test
    epochs, scorings = directory.snapshot_epochs(), ["ts", "ss"]
    assert len(epochs) == 2
    alone = {epoch: _scored_alone(model, context, epoch, scorings) for epoch in epochs}
    for epoch in epochs:  # what `pdd evaluate` wrote: every snapshot in one pass over the test features
        assert read_epoch_evaluation(directory.epoch_evaluation(epoch))["images"]["scores"] == alone[epoch]

    # the smallest budgets, the paths of a large test set with pixel truth: a chunk per batch, a group per snapshot
    copy = tmp_path / "run"
    shutil.copytree(directory.root, copy, copy_function=os.link, ignore=shutil.ignore_patterns("eval", "metrics.json"))
    monkeypatch.setattr(evaluate, "FEATURES_IN_MEMORY_BYTES", 1)
    monkeypatch.setattr(evaluate, "MAPS_IN_MEMORY_BYTES", 1)
    groups, real_score_snapshots = [], evaluate.score_snapshots
    monkeypatch.setattr(evaluate, "score_snapshots", lambda model, load, group, *args, **kwargs: groups.append(
        list(group)) or real_score_snapshots(model, load, group, *args, **kwargs))
    document = evaluate.evaluate_run(copy, engine_workspace.params_file, progress=False)
    assert groups == [[epoch] for epoch in epochs]
    for epoch in epochs:
        assert read_epoch_evaluation(RunDir(copy).epoch_evaluation(epoch))["images"]["scores"] == alone[epoch]
    assert document["metrics"] == read_metrics(directory.metrics)["metrics"]  # pixel metrics from the same maps
