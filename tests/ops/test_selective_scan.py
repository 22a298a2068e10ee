"""selective_scan against a float64 step-by-step reference written here from the recurrence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pdd.ops import available_backends, cpu_kernel, dispatch, reference, selective_scan

CPU_BACKENDS = ["torch", pytest.param("kernel", marks=pytest.mark.skipif(
    "kernel" not in available_backends(), reason="no C compiler: the compiled kernel is unavailable"))]


def sequential_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t; y_t = <C_t, h_t> + D u_t, gated by silu(z); in float64."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    batch, channels, length = u.shape
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    per_group = channels // B.shape[1]
    B, C = B.repeat_interleave(per_group, dim=1), C.repeat_interleave(per_group, dim=1)
    dt = delta if delta_bias is None else delta + delta_bias.double()[:, None]
    dt = F.softplus(dt) if delta_softplus else dt
    h = u.new_zeros(batch, channels, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * u[:, :, t])[..., None] * B[..., t]
        ys.append((h * C[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.double()[:, None] * u
    if z is not None:
        y = y * F.silu(z.double())
    return y


def make_inputs(batch=2, groups=4, per_group=6, n_state=16, length=97, grouped=True, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    channels = groups * per_group

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    bc_shape = (batch, groups, n_state, length) if grouped else (batch, n_state, length)
    return dict(
        u=randn(batch, channels, length),
        delta=randn(batch, channels, length),
        A=-torch.exp(randn(channels, n_state)),
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(channels),
        z=randn(batch, channels, length),
        delta_bias=randn(channels),
    )


def relative_error(y, reference):
    return ((y.double() - reference).abs().max() / reference.abs().max()).item()


# (grouped B/C, which optional inputs): every backend is checked on these (tests/ops/test_triton_scan.py too)
OPTION_CASES = [
    (True, dict(D=True, z=True, delta_bias=True, delta_softplus=True)),
    (False, dict(D=True, z=False, delta_bias=True, delta_softplus=True)),
    (True, dict(D=False, z=False, delta_bias=False, delta_softplus=False)),
]


def assert_matches_sequential_reference(backend: str, grouped: bool, options: dict[str, bool]) -> None:
    inputs = make_inputs(grouped=grouped)
    if not options["delta_softplus"]:
        inputs["delta"] = inputs["delta"].abs()  # positive steps, as a softplus would give
    kwargs = {k: inputs[k] for k in ("D", "z", "delta_bias") if options[k]}
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C")]
    y = selective_scan(*args, **kwargs, delta_softplus=options["delta_softplus"], backend=backend)
    reference = sequential_reference(*args, **kwargs, delta_softplus=options["delta_softplus"])
    assert y.shape == inputs["u"].shape and y.dtype == torch.float32
    assert relative_error(y, reference) <= 1e-5


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("grouped, options", OPTION_CASES)
def test_matches_sequential_reference(backend, grouped, options):
    assert_matches_sequential_reference(backend, grouped, options)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_long_sequence_with_strong_decay_is_exact(backend):
    """L = 4096 with |A| up to ~55 and large steps: any cumulative product of decays underflows."""
    inputs = make_inputs(batch=1, groups=2, per_group=4, length=4096, seed=1)
    inputs["A"] = -torch.exp(torch.rand(inputs["A"].shape, generator=torch.Generator().manual_seed(2)) * 4)
    inputs["delta"] = inputs["delta"] * 3
    y = selective_scan(**inputs, delta_softplus=True, backend=backend)
    reference = sequential_reference(**inputs, delta_softplus=True)
    assert torch.isfinite(y).all()
    assert relative_error(y, reference) <= 1e-5


def test_backends_agree_on_a_vmamba_like_call():
    if "kernel" not in available_backends():
        pytest.skip("no C compiler")
    inputs = make_inputs(batch=2, groups=4, per_group=24, length=256, seed=3)
    y_torch = selective_scan(**inputs, delta_softplus=True, backend="torch")
    y_kernel = selective_scan(**inputs, delta_softplus=True, backend="kernel")
    assert relative_error(y_kernel, y_torch.double()) <= 1e-5


@pytest.mark.parametrize("grouped", [True, False])
def test_gradcheck_float64_across_blocks(monkeypatch, grouped):
    monkeypatch.setattr(reference, "BLOCK_ELEMENTS", 64)  # several blocks: exercises the carried state
    inputs = make_inputs(batch=2, groups=2, per_group=2, n_state=3, length=19, grouped=grouped, dtype=torch.float64)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    tensors = tuple(inputs[k].requires_grad_() for k in names)
    assert torch.autograd.gradcheck(lambda *args: selective_scan(*args, delta_softplus=True), tensors)


def test_float32_gradients_match_reference_autograd():
    inputs = make_inputs(batch=1, groups=2, per_group=3, length=64, seed=4)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    leaves64 = {k: v.double().requires_grad_() for k, v in inputs.items()}
    weight = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(5))
    (selective_scan(**leaves, delta_softplus=True) * weight).sum().backward()
    (sequential_reference(**leaves64, delta_softplus=True) * weight.double()).sum().backward()
    for name in leaves:
        expected = leaves64[name].grad
        assert relative_error(leaves[name].grad, expected) <= 1e-4, name


def test_half_precision_inputs_return_their_dtype_and_compute_in_float32():
    inputs = make_inputs(length=33)
    half = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    y = selective_scan(**half, delta_softplus=True)
    assert y.dtype == torch.bfloat16
    reference = sequential_reference(**{k: v.float() for k, v in half.items()}, delta_softplus=True)
    assert relative_error(y.float(), reference) <= 1e-2  # bfloat16 output rounding only


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(delta=torch.zeros(2, 24, 5)), "u and delta"),
        (dict(A=torch.zeros(23, 16)), "A must be"),
        (dict(B=torch.zeros(2, 5, 16, 97)), "B must be"),
        (dict(C=torch.zeros(2, 16, 96)), "C must be"),
        (dict(D=torch.zeros(3)), "D must have"),
    ],
)
def test_rejects_wrong_shapes(change, message):
    inputs = {**make_inputs(), **change}
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs)


def test_cuda_backend_without_mamba_or_gpu_says_what_is_needed():
    if torch.cuda.is_available() and dispatch._mamba_scan_fn() is not None:
        pytest.skip("mamba-ssm and a GPU are present")
    with pytest.raises(RuntimeError, match="mamba-ssm"):
        selective_scan(**make_inputs(length=8), backend="cuda")


def test_falls_back_to_torch_when_the_kernel_cannot_be_built(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PDD_KERNEL_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setattr(cpu_kernel.shutil, "which", lambda name: "/bin/false" if name == "false" else None)
    cpu_kernel.load_kernel.cache_clear()
    try:
        assert "kernel" not in available_backends()
        assert "could not build the C kernel" in caplog.text
        inputs = make_inputs(length=16)
        reference = sequential_reference(**inputs, delta_softplus=True)
        assert relative_error(selective_scan(**inputs, delta_softplus=True), reference) <= 1e-5
        with pytest.raises(RuntimeError, match="C compiler"):
            selective_scan(**inputs, backend="kernel")
    finally:
        cpu_kernel.load_kernel.cache_clear()
    left = {path.suffix for path in tmp_path.iterdir()}
    assert left <= {".lock"}, f"a failed build must leave no library behind, only its lock; found {left}"
