"""The ``triton`` backend against the float64 step-by-step references of tests/ops.

The kernel runs on CPU tensors in Triton's interpreter (tests/conftest.py sets ``TRITON_INTERPRET=1``
before triton is imported, on machines without CUDA; with CUDA, tests/ops/test_scan_cuda.py checks the compiled
kernel).
The numbers always come from the real kernel; only the device checks of the backend choice are mocked.
"""

from __future__ import annotations

import pytest
import torch

from pdd.ops import available_backends, cross_scan_2d, dispatch, selective_scan
from tests.ops.test_cross_scan import make_inputs as make_grid_inputs
from tests.ops.test_cross_scan import step_by_step_reference as cross_scan_reference
from tests.ops.test_selective_scan import (
    OPTION_CASES,
    assert_matches_sequential_reference,
    make_inputs,
    relative_error,
    sequential_reference,
)

pytest.importorskip("triton")

# (K*D channels, L) of VMamba-Tiny's four stages at 256² (benchmarks/bench_scan.py), d_state 16. The
# interpreter runs the kernel's programs one after another, ~3 ms a time step each, so the channels are cut to
# one program (a partial block of 24 channels in 4 groups, the routes); L and N are kept.
VMAMBA_TINY_STAGES = [(768, 4096), (1536, 1024), (3072, 256), (6144, 64)]


@pytest.fixture(scope="module")
def triton_scan():
    from pdd.ops import triton_scan

    if not triton_scan.interpreting():
        pytest.skip("the kernel is compiled for CUDA here: tests/ops/test_scan_cuda.py checks it on the GPU")
    return triton_scan


@pytest.mark.parametrize("grouped, options", OPTION_CASES)
def test_matches_sequential_reference(triton_scan, grouped, options):
    assert_matches_sequential_reference("triton", grouped, options)


@pytest.mark.parametrize("channels, length", VMAMBA_TINY_STAGES, ids=[f"stage{i + 1}" for i in range(4)])
def test_vmamba_tiny_stage_shapes(triton_scan, channels, length):
    """A trained VMamba's ranges (dt ~ 0.1 through softplus, A from -1 to -16) at each stage's L and N; at
    L = 4096 any closed form built on cumulative products of the decays would underflow."""
    gen = torch.Generator().manual_seed(length)
    inputs = make_inputs(batch=1, groups=1, per_group=24, length=length, seed=length)
    inputs["delta"] = inputs["delta"] - 2.0
    inputs["A"] = -torch.exp(torch.rand(inputs["A"].shape, generator=gen) * 2.8)
    y = selective_scan(**inputs, delta_softplus=True, backend="triton")
    assert relative_error(y, sequential_reference(**inputs, delta_softplus=True)) <= 1e-5


@pytest.mark.parametrize("n_state, height, width", [(16, 6, 9), (3, 7, 4), (16, 1, 5), (16, 16, 24)])
def test_cross_scan_matches_route_by_route_scans(triton_scan, n_state, height, width):
    """Every route's visiting order on grids of every shape, in one launch."""
    inputs = make_grid_inputs(batch=1, channels=5, n_state=n_state, height=height, width=width)
    with torch.no_grad():
        y = cross_scan_2d(**inputs, backend="triton")
    assert y.shape == inputs["u"].shape and y.dtype == torch.float32
    assert relative_error(y, cross_scan_reference(**inputs)) <= 1e-5


def test_half_precision_inputs_return_their_dtype(triton_scan):
    half = {k: v.to(torch.bfloat16) for k, v in make_inputs(length=33).items()}
    y = selective_scan(**half, delta_softplus=True, backend="triton")
    assert y.dtype == torch.bfloat16
    expected = sequential_reference(**{k: v.float() for k, v in half.items()}, delta_softplus=True)
    assert relative_error(y.float(), expected) <= 1e-2  # bfloat16 output rounding only


def test_is_forward_only(triton_scan):
    inputs = make_inputs(length=8)
    inputs["u"].requires_grad_()
    with pytest.raises(RuntimeError, match="forward-only"):
        selective_scan(**inputs, backend="triton")
    grid = make_grid_inputs()
    grid["delta"].requires_grad_()
    with pytest.raises(RuntimeError, match="forward-only"):
        cross_scan_2d(**grid, backend="triton")


def test_listed_for_cuda_devices_only(triton_scan, monkeypatch):
    """Listed for a device (`python -m benchmarks` on the CPU of a GPU machine must not get it: it refuses CPU
    tensors), and never for the interpreter: benchmarks and model tests run every listed backend, far too slow."""
    assert "triton" not in available_backends("cuda")  # no GPU here; and the interpreter's kernel is not listed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "triton" not in available_backends("cuda")  # the interpreter's
    monkeypatch.setattr(triton_scan, "interpreting", lambda: False)  # a kernel compiled for CUDA
    assert "triton" in available_backends("cuda") and "triton" in available_backends("cuda:1")
    assert "triton" not in available_backends("cpu") and "kernel" not in available_backends("cuda")


def test_kernel_launches_under_the_tensors_device(triton_scan, monkeypatch):
    """Triton launches on the *current* GPU: the launch is wrapped in a guard for the output's device."""
    guarded = []
    real = triton_scan.launch_device
    monkeypatch.setattr(triton_scan, "launch_device", lambda tensor: guarded.append(tensor.device) or real(tensor))
    inputs = make_inputs(length=8)
    with torch.no_grad():
        selective_scan(**inputs, backend="triton")
        cross_scan_2d(**make_grid_inputs(), backend="triton")
    assert guarded == [inputs["u"].device] * 2


@pytest.fixture
def pretend_cuda(triton_scan, monkeypatch):
    """CPU tensors that claim to be on CUDA, with mamba-ssm absent, run by the interpreter; counts triton calls."""
    calls = []
    for name in ("selective_scan", "cross_scan_2d"):
        real = getattr(triton_scan, name)
        monkeypatch.setattr(triton_scan, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(triton_scan, "runs_on", lambda tensor: True)
    monkeypatch.setattr(dispatch, "_mamba_scan_fn", lambda: None)
    return calls


def test_auto_picks_triton_on_cuda_without_mamba(pretend_cuda):
    inputs = make_inputs(length=16)
    with torch.no_grad():
        y = selective_scan(**inputs, delta_softplus=True)
        y_grid = cross_scan_2d(**make_grid_inputs())
    assert pretend_cuda == [1, 1]
    assert relative_error(y, sequential_reference(**inputs, delta_softplus=True)) <= 1e-5
    assert relative_error(y_grid, cross_scan_reference(**make_grid_inputs())) <= 1e-5


def test_auto_leaves_gradients_to_the_differentiable_scan(pretend_cuda):
    inputs = make_inputs(length=16)
    inputs["u"].requires_grad_()
    y = selective_scan(**inputs, delta_softplus=True)
    y.sum().backward()
    assert pretend_cuda == [] and inputs["u"].grad.abs().sum() > 0


def test_auto_prefers_mamba_ssm_when_installed(pretend_cuda, monkeypatch):
    mamba_calls = []
    monkeypatch.setattr(dispatch, "_mamba_scan_fn", lambda: lambda *args: mamba_calls.append(1) or args[0])
    with torch.no_grad():
        selective_scan(**make_inputs(length=16), delta_softplus=True)
    assert mamba_calls == [1] and pretend_cuda == []
