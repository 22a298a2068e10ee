"""A baseline re-run under pdd's protocol: the `rd4ad` variant is M1 (RD4AD's code, bit for bit) trained with
RD4AD's own recipe and teacher, and training and evaluation read that recipe, not the global one."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pdd.config import RunSpec
from pdd.engine import runs
from pdd.engine.rundir import RunDir
from pdd.models.state import trainable_state

pytestmark = pytest.mark.slow


def test_an_rd4ad_run_builds_m1_parameter_for_parameter(engine_workspace, tmp_path):
    """Built as training builds it (seeded by the run's seed), an rd4ad run's model is M1's: every trainable
    tensor (OCBE bottleneck and de-wide-ResNet50 student) is equal. Only the teacher differs: its WRN50 tag
    (torchvision's `tv_in1k`, RD4AD's, instead of PDD's `racm_in1k`); with pretrained weights that is another
    file, here (random-init teachers) the same architecture under the same seed."""
    params = engine_workspace.params()
    models = {}
    for variant in ("M1", "rd4ad"):
        context = runs.RunContext(params, RunSpec("headct", variant, "code", 0), RunDir(tmp_path / variant))
        runs.seed_everything(0, context.recipe.deterministic)
        models[variant] = context.build_model()
    m1, rd4ad = (trainable_state(models[variant]) for variant in ("M1", "rd4ad"))
    assert list(m1) == list(rd4ad) and len(m1) > 300
    assert all(torch.equal(m1[key], rd4ad[key]) for key in m1)
    assert dataclasses.replace(models["M1"].options, wrn_tag="tv_in1k") == models["rd4ad"].options
    assert models["rd4ad"].teacher_fingerprint()["wrn50"]["name"] == "wide_resnet50_2.tv_in1k"


def test_training_and_evaluation_read_the_variant_recipe(engine_workspace, tmp_path):
    """The workspace's global recipe is 2 epochs of batch 4 at lr 2e-3; the variant's own (1 epoch of batch 8 at
    RD4AD's lr 0.005) is what trains, what run.json records and what `pdd evaluate` rebuilds the run from (its
    recorded params and epochs; evaluating itself is tested on every variant by test_train_evaluate.py)."""
    from pdd.engine import train_run

    overrides = engine_workspace.overrides("data.image_size=32", "variants.rd4ad.train.epochs=1",
                                           "variants.rd4ad.train.batch_size=8")
    params = engine_workspace.params(*overrides[len(engine_workspace.overrides()):])
    assert (params.train.epochs, params.train.batch_size) == (2, 4)
    run_dir = tmp_path / "rd4ad"
    result = train_run(params, RunSpec("headct", "rd4ad", "code", 0), run_dir,
                       params_file=engine_workspace.params_file, overrides=overrides, progress=False)
    assert (result.epochs, result.global_step, result.snapshots) == (1, 1, (1,))  # 8 images, one batch of 8
    record = json.loads((run_dir / "run.json").read_text())
    assert record["epochs"] == 1 and record["recipe"]["schedule"] == "constant"
    assert (record["recipe"]["lr"], record["recipe"]["batch_size"]) == (5e-3, 8)
    assert record["teachers"]["wrn50"]["tag"] == "tv_in1k"
    lr = (run_dir / "dvclive" / "plots" / "metrics" / "train" / "lr.tsv").read_text().split()
    assert float(lr[-1]) == pytest.approx(5e-3)

    recorded = runs.RunRecord.read(RunDir(run_dir))
    assert recorded.trained_params().recipe("rd4ad") == runs.RunContext(params, recorded.spec, RunDir(run_dir)).recipe
    assert recorded.trained_params().teachers_of("rd4ad").wrn50.tag == "tv_in1k"


def test_a_run_whose_recorded_params_this_pdd_refuses_says_what_to_do(repo_root):
    """An earlier pdd let a variant carry a model option its architecture never read; this one refuses such a
    variant, so evaluating an old run recorded with one names the key and the commit to use instead."""
    from pdd.config import load_params
    from pdd.errors import PDDError

    params = load_params(repo_root / "params.yaml").model_dump(mode="json")
    params["variants"]["M1"]["overrides"]["tau_low"] = 0.5
    record = runs.RunRecord(dataset="headct", variant="M1", fidelity="code", seed=0, params_file="params.yaml",
                            profile="paper", overrides=[], arch="M1", params=params, params_sha256="0" * 64,
                            identity={}, image_size=256, epochs=100, demo=False, git_commit="0123456789abcdef",
                            git_dirty=False, device="cpu")
    with pytest.raises(PDDError, match=r"variants\.M1: .*tau_low.*the pdd commit its run.json records "
                                       r"\(0123456789ab\)"):
        record.trained_params()
