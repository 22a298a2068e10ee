"""Uni-Medical: one model over all classes, metrics pooled over classes and per class."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pdd.config import RunSpec, load_params
from pdd.engine import evaluate_run, train_run
from pdd.engine.metrics import image_metrics

pytestmark = pytest.mark.slow


def test_one_model_over_all_classes_with_per_class_metrics(engine_workspace, tmp_path):
    from pdd.data.synthetic import generate

    generate(tmp_path / "prepared" / "unimedical", seed=0, n_train=1, n_test_normal=2, n_test_anomalous=2, size=32,
             name="unimedical")
    overrides = engine_workspace.overrides(f"paths.prepared={tmp_path / 'prepared'}", "data.image_size=32",
                                           f"paths.cache={tmp_path / 'cache'}", "train.epochs=1", "eval.save_maps=2")
    params = load_params(engine_workspace.params_file, overrides=overrides, profile="demo")
    run_dir = tmp_path / "run"
    result = train_run(params, RunSpec("unimedical", "full", "code", 0), run_dir,
                       params_file=engine_workspace.params_file, overrides=overrides, progress=False)
    assert result.global_step == 1, "3 classes x 1 image in one batch of 4: one model, one step"
    document = evaluate_run(run_dir, progress=False)

    with open(run_dir / "scores_ts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({row["class"] for row in rows}) == ["brain", "liver", "retinal"] and len(rows) == 12
    ts = document["metrics"]["ts"]["last"]
    assert sorted(ts["per_class"]) == ["brain", "liver", "retinal"]
    for cls, metrics in ts["per_class"].items():
        subset = [row for row in rows if row["class"] == cls]
        expected = image_metrics([int(r["label"]) for r in subset], [float(r["score"]) for r in subset])
        assert metrics["image_AUROC"] == pytest.approx(expected["image_AUROC"])
        assert metrics["pixel_AUROC"] is not None
    pooled = image_metrics([int(r["label"]) for r in rows], [float(r["score"]) for r in rows])
    assert ts["pooled"]["image_AP"] == pytest.approx(pooled["image_AP"])

    maps = np.load(run_dir / "maps" / "ts.npz")
    assert list(maps["labels"]) == [1, 0] and maps["masks"][0].any()
