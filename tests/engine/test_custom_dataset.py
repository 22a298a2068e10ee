"""A dataset defined only in a params file goes through the whole product with no code change:
prepare -> train -> evaluate -> export -> predict -> its results table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_a_folder_dataset_from_params_alone_trains_evaluates_exports_predicts_and_tabulates(engine_workspace,
                                                                                          tmp_path):
    from pdd.data.synthetic import generate

    root = tmp_path / "my scans"  # a space: paths travel through every command unharmed
    generate(root, seed=5, n_train=8, n_test_normal=4, n_test_anomalous=4, size=64, name="brainmri")
    (root / "split.csv").unlink()  # a plain MVTec-style tree, as a user has it
    text = (REPO / "params.yaml").read_text()
    text = text.replace("    headct: {}\n", f"    headct: {{}}\n    mine: {{kind: folder, root: '{root}'}}\n")
    text = text.replace("plan:                       #", "plan:\n  mine_results:\n    - {datasets: [mine], "
                                                          "variants: [M1]}\n  #")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(text)
    results = tmp_path / "results"
    sets = [f"paths.prepared={tmp_path / 'prepared'}", f"paths.cache={tmp_path / 'cache'}", f"paths.results={results}",
            f"paths.tables={tmp_path / 'tables'}", "data.source=real", "data.image_size=64", "train.epochs=1",
            "train.eval_every=1", "train.num_workers=0", "train.teacher_cache=true", "train.cache_fp16=true"]
    common = ["--params", str(params_file), "--profile", "demo", *(arg for s in sets for arg in ("--set", s))]
    run_dir = results / "mine" / "M1" / "code" / "seed0"
    steps = [
        ["data", "prepare", "mine", *common],
        ["train", *common, "--dataset", "mine", "--variant", "M1", "--seed", "0", "--out", str(run_dir),
         "--no-progress"],
        ["evaluate", "--params", str(params_file), "--run", str(run_dir), "--no-progress"],
        ["export", "--run", str(run_dir), "--out", str(tmp_path / "model")],
        ["predict", "--model", str(tmp_path / "model"), str(root / "test"), "--out", str(tmp_path / "predicted"),
         "--no-progress"],
        ["tables", *common, "--only", "mine_results"],
    ]
    for step in steps:
        done, _ = engine_workspace.run(*step)
        assert done.returncode == 0, f"pdd {step[0]}: {done.stderr[-3000:]}"
    with open(tmp_path / "predicted" / "predictions.csv", newline="") as handle:
        predicted = {Path(row["input"]).relative_to(root).as_posix(): float(row["score"])
                     for row in csv.DictReader(handle)}
    # evaluated through the fp16 teacher cache: the predictor rounds its teacher features the same way
    images = json.loads((run_dir / "eval" / "epoch_001.json").read_text())["images"]
    assert json.loads((tmp_path / "model" / "manifest.json").read_text())["teacher_features"] == "float16"
    assert len(predicted) == len(images["paths"]) == 8
    assert max(abs(predicted[path] - score) for path, score in zip(images["paths"], images["scores"]["ts"])) <= 1e-6
    table = (tmp_path / "tables" / "mine_results.tex").read_text()
    assert "mine" in table and "M1" in table
