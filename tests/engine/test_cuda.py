"""On a GPU (`pytest -m gpu`; skipped without CUDA): the `full` step, bf16 autocast, `pdd evaluate` and torchrun.

Comparisons with the CPU run under the engine's own numerics: `train.tf32` / `eval.tf32` of params.yaml (false:
full float32), applied by `pdd.devices.set_tf32` in-process as `pdd train` and `pdd evaluate` apply it in their
subprocesses. TF32 would round products to 10 mantissa bits, which would blur what these tests look for, a wrong
result on the GPU path (scan backend, devices of cached features, the teacher-cache policy); with `tf32: true`
in params.yaml these bounds no longer describe the run.
"""

from __future__ import annotations

import copy
import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from pdd.config import load_params
from pdd.devices import set_tf32
from pdd.models import build_pdd
from tests.engine.conftest import REPO_ROOT
from tests.ops.test_selective_scan import relative_error

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture
def engine_numerics():
    """The float32 numerics `pdd train` applies (params.yaml's train.tf32), for this process's GPU steps."""
    yield set_tf32(load_params(REPO_ROOT / "params.yaml").train.tf32)


def training_step(model, images: torch.Tensor, bf16: bool = False):
    """Teacher features, loss and student gradients of one step, as the engine runs it (teachers outside autocast)."""
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        features = model.teacher_features(images)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        total = model.loss_from_features(features)["total"]
    total.backward()
    gradients = {name: p.grad.detach().double().cpu() for name, p in model.named_parameters() if p.grad is not None}
    return {name: f.cpu() for name, f in features.items()}, total.item(), gradients


def gradient_error(gradients: dict, expected: dict) -> float:
    assert gradients.keys() == expected.keys() and gradients
    return max(((g - expected[n]).norm() / expected[n].norm().clamp_min(1e-30)).item() for n, g in gradients.items())


@pytest.fixture(scope="module")
def models_and_images():
    torch.manual_seed(0)
    cpu_model = build_pdd("full", "code", pretrained=False).train()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return cpu_model, copy.deepcopy(cpu_model).cuda(), images


def test_full_training_step_on_cuda_matches_the_cpu(models_and_images, engine_numerics):
    cpu_model, gpu_model, images = models_and_images
    cpu_features, cpu_loss, cpu_gradients = training_step(cpu_model, images)
    gpu_features, gpu_loss, gpu_gradients = training_step(gpu_model, images.cuda())
    for name, expected in cpu_features.items():
        assert gpu_features[name].dtype == torch.float32
        assert relative_error(gpu_features[name], expected.double()) <= 1e-4, name  # teachers, Triton scan
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    assert gradient_error(gpu_gradients, cpu_gradients) <= 1e-3


def test_bf16_autocast_step_keeps_the_teachers_in_float32_and_stays_near_fp32(models_and_images, engine_numerics):
    _, gpu_model, images = models_and_images
    features, fp32_loss, fp32_gradients = training_step(gpu_model, images.cuda())
    bf16_features, bf16_loss, bf16_gradients = training_step(gpu_model, images.cuda(), bf16=True)
    assert all(f.dtype == torch.float32 for f in bf16_features.values())
    assert all(relative_error(bf16_features[name], f.double()) <= 1e-6 for name, f in features.items())
    assert bf16_loss == pytest.approx(fp32_loss, rel=5e-2)  # bfloat16 keeps 8 mantissa bits
    assert gradient_error(bf16_gradients, fp32_gradients) <= 0.2


def scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}


def test_pdd_evaluate_on_cuda_matches_the_cpu(engine_workspace, tmp_path):
    """Trained on the CPU with `teacher_cache: auto` (cached there); evaluated on the CPU (from the cache) and on
    the GPU (teachers recomputed there, the Triton scan): the same scores."""
    run_dir = tmp_path / "run"
    extra = (f"paths.cache={tmp_path / 'cache'}", "train.teacher_cache=auto")
    trained, _ = engine_workspace.run(*engine_workspace.train_args(run_dir, *extra), env=CPU_ONLY)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((run_dir / "run.json").read_text())["teacher_cache"] is True
    by_device = {}
    for device, env in (("cpu", CPU_ONLY), ("cuda", {})):
        evaluated, _ = engine_workspace.run(*engine_workspace.evaluate_args(run_dir), env=env)
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]
        evaluation = json.loads((run_dir / "metrics.json").read_text())["provenance"]["evaluation"]
        assert evaluation["teacher_cache"] is (device == "cpu")
        assert evaluation["device"]["device"].startswith(device)
        assert evaluation["numerics"]["tf32"] is load_params(REPO_ROOT / "params.yaml").eval.tf32
        by_device[device] = {scoring: scores(run_dir / f"scores_{scoring}.csv") for scoring in ("ts", "ss")}
    for scoring, expected in by_device["cpu"].items():
        got = by_device["cuda"][scoring]
        assert got.keys() == expected.keys()
        worst = max(abs(got[path] / score - 1) for path, score in expected.items())
        assert worst <= 1e-3, (scoring, worst)


def test_one_gpu_torchrun_trains_with_bf16_and_recomputed_teachers(engine_workspace, tmp_path):
    """torchrun on one GPU (one rank, so the one-process path: NCCL refuses two ranks on one device), with
    `bf16_autocast` and `teacher_cache: auto` end to end."""
    run_dir = tmp_path / "ddp"
    torchrun = (str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=1", "-m", "pdd")
    extra = (f"paths.cache={tmp_path / 'cache'}", "train.teacher_cache=auto", "train.bf16_autocast=true")
    trained, _ = engine_workspace.run(*engine_workspace.train_args(run_dir, *extra), launcher=torchrun)
    assert trained.returncode == 0, trained.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["device"].startswith("cuda:") and record["teacher_cache"] is False
    assert record["gpu"]["device"] == record["device"].split()[0] and record["numerics"]["bf16_autocast"] is True
    assert "recomputed every batch" in trained.stderr
    assert not any((tmp_path / "cache").rglob("shard-*.safetensors"))  # only the ready pixels are cached
    marker = json.loads((run_dir / "trained.json").read_text())
    assert marker["epochs"] == 2 and marker["global_step"] == 4  # 8 images, batch 4, 2 epochs
