"""`pdd weights import-official` -> `pdd evaluate` on small random decoders saved as the official script saves them."""

from __future__ import annotations

import json

import pytest
import torch

from pdd.config import RunSpec
from pdd.engine.results import read_metrics
from pdd.engine.rundir import RunDir
from pdd.engine.runs import RunContext
from pdd.models.state import load_snapshot, trainable_state
from pdd.io import sha256_file
from pdd.models.official import to_official_state_dict

pytestmark = pytest.mark.slow
SPEC = RunSpec("headct", "full", "code", 0)


def _save_official(model: torch.nn.Module, path, epoch: int) -> None:
    """What rank 0 of `train_two_twins_ddp.py` writes after `epoch` epochs (the decoder of `decoder.module`)."""
    torch.save({"decoder": to_official_state_dict(model, "decoder"), "optimizer": {"state": {}, "param_groups": []},
                "scheduler": {"last_epoch": epoch, "T_max": 40}, "epoch": epoch - 1}, path)


def test_official_checkpoints_import_and_evaluate_with_the_authors_selection(engine_workspace, tmp_path):
    context = RunContext(engine_workspace.params(), SPEC, RunDir(tmp_path / "unused"))
    model = context.build_model()
    files, expected = [], {}
    for epoch in (1, 2):
        with torch.no_grad():  # two different decoders (epoch 2 is epoch 1 moved a little)
            for value in model.students.parameters():
                value.mul_(1.0 + 0.05 * epoch)
        files.append(tmp_path / f"epoch_{epoch}_auc=0.{epoch}000.pth")
        _save_official(model, files[-1], epoch)
        expected[epoch] = {key: value.clone() for key, value in trainable_state(model).items()}

    run_dir = tmp_path / "official"
    sets = [arg for override in engine_workspace.overrides() for arg in ("--set", override)]
    imported, _ = engine_workspace.run("weights", "import-official", *map(str, files), "--params",
                                       str(engine_workspace.params_file), "--profile", "demo", *sets,
                                       "--dataset", "headct", "--out", str(run_dir))
    assert imported.returncode == 0, imported.stderr[-3000:]
    for epoch, state in expected.items():
        snapshot, metadata = load_snapshot(RunDir(run_dir).snapshot(epoch))
        assert metadata["epoch"] == str(epoch) and snapshot.keys() == state.keys()
        assert all(torch.equal(snapshot[key], value) for key, value in state.items())

    evaluated, _ = engine_workspace.run("evaluate", "--params", str(engine_workspace.params_file), "--run",
                                        str(run_dir), "--set", "eval.selection_scorer=official_first_image",
                                        "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    document = read_metrics(run_dir / "metrics.json")
    source = document["provenance"]["weights_source"]
    assert "official code" in source["trained_by"]
    assert [(f["epoch"], f["sha256"], f["official_auroc_in_name"]) for f in source["files"]] == [
        (1, sha256_file(files[0]), 0.1), (2, sha256_file(files[1]), 0.2)]
    assert document["provenance"]["snapshots_scored"] == [1, 2] and document["run"]["epochs"] == 2
    best = document["metrics"]["ts"]["best_of_test"]
    assert best["selected_by"] == "official_first_image"
    assert best == document["metrics"]["ts"]["best_of_test_by"]["official_first_image"]
    # the reported metrics are the per-image ones of the epoch the authors' protocol selected
    per_epoch = json.loads((run_dir / "eval" / f"epoch_{best['epoch']:03d}.json").read_text())
    assert best["pooled"] == per_epoch["metrics"]["ts"]["pooled"]

    # an imported run is a model like any other: exported, its bundle says who trained the weights
    exported, _ = engine_workspace.run("export", "--run", str(run_dir), "--out", str(tmp_path / "model"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["run"]["weights_source"] == source and manifest["selection"]["epoch"] == best["epoch"]
