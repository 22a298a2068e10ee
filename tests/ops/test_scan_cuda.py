"""On a GPU: every scan backend against the float64 step-by-step references (`pytest -m gpu`; skipped without CUDA).

The compiled kernel's exp is the GPU's approximate one (a few ulp), so the bound is 1e-4 here, where the
interpreter's run of the same kernel (tests/ops/test_triton_scan.py) meets 1e-5. The float32 numerics are the
engine's own (params.yaml's `train.tf32`, applied as `pdd train` applies it): the `torch` backend's products
would round to TF32 otherwise.
"""

from __future__ import annotations

import pytest
import torch

from pdd.ops import available_backends, cross_scan_2d, selective_scan
from tests.engine.test_cuda import engine_numerics  # noqa: F401  (a fixture)
from tests.ops.test_cross_scan import make_inputs as make_grid_inputs
from tests.ops.test_cross_scan import step_by_step_reference as cross_scan_reference
from tests.ops.test_selective_scan import make_inputs, relative_error, sequential_reference
from tests.ops.test_triton_scan import VMAMBA_TINY_STAGES

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.usefixtures("engine_numerics")]
GPU_BACKENDS = [b for b in ("torch", "triton", "cuda") if b == "torch" or b in available_backends("cuda")]
MAX_RELATIVE_ERROR = 1e-4


def on_cuda(inputs: dict) -> dict:
    return {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("channels, length", VMAMBA_TINY_STAGES, ids=[f"stage{i + 1}" for i in range(4)])
def test_backends_match_the_reference_at_vmamba_tiny_shapes(backend, channels, length):
    """Full channel counts of every stage, grouped by route as VMamba calls it, in a trained model's ranges."""
    inputs = make_inputs(batch=1, groups=4, per_group=channels // 4, length=length, seed=length)
    inputs["delta"] = inputs["delta"] - 2.0
    inputs["A"] = -torch.exp(torch.rand(inputs["A"].shape, generator=torch.Generator().manual_seed(length)) * 2.8)
    with torch.no_grad():
        y = selective_scan(**on_cuda(inputs), delta_softplus=True, backend=backend)
    assert y.is_cuda
    assert relative_error(y.cpu(), sequential_reference(**inputs, delta_softplus=True)) <= MAX_RELATIVE_ERROR


@pytest.mark.parametrize("backend", ["auto", *GPU_BACKENDS])
def test_cross_scan_backends_match_route_by_route_scans(backend):
    inputs = make_grid_inputs(batch=2, channels=24, height=32, width=48)
    with torch.no_grad():
        y = cross_scan_2d(**on_cuda(inputs), backend=backend)
    assert relative_error(y.cpu(), cross_scan_reference(**inputs)) <= MAX_RELATIVE_ERROR


def test_auto_falls_back_to_a_differentiable_scan_for_gradients():
    inputs = on_cuda(make_grid_inputs())
    inputs["u"].requires_grad_()
    cross_scan_2d(**inputs).sum().backward()
    assert torch.isfinite(inputs["u"].grad).all() and inputs["u"].grad.abs().sum() > 0
