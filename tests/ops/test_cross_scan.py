"""cross_scan_2d (VMamba's four-route scan, channels-last layout) against a float64 step-by-step loop over
explicitly listed pixel orders, and the fused channels-last kernel against the route-by-route C kernel and
torch's softplus."""

from __future__ import annotations

import pytest
import torch

from pdd.ops import available_backends, cpu_kernel, cross_scan_2d

needs_kernel = pytest.mark.skipif("kernel" not in available_backends(), reason="no C compiler")
ALL_BACKENDS = ["torch", pytest.param("kernel", marks=needs_kernel), pytest.param("fused", marks=needs_kernel)]
# (channels, N, height, width): N = 16 and odd N; non-square and one-row grids; 37 channels = two full
# 16-channel vectors and a tail of 5, 5 channels = a tail only.
SHAPES = [(5, 16, 6, 9), (37, 16, 5, 7), (5, 3, 7, 4), (37, 5, 4, 6), (5, 16, 1, 5)]


def visiting_orders(height: int, width: int) -> list[list[int]]:
    """Pixel indices in the order each route visits them, written out with plain loops."""
    row_major = [r * width + c for r in range(height) for c in range(width)]
    column_major = [r * width + c for c in range(width) for r in range(height)]
    return [row_major, column_major, row_major[::-1], column_major[::-1]]


def step_by_step_reference(u, delta, A, B, C, D, height, width, delta_bias, delta_softplus):
    """dt = softplus(delta + delta_bias); h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t along every route, one pixel
    at a time, in float64; y at a pixel = the four routes' <C_t, h_t> there + the four D skips times u."""
    u, delta, A, B, C, D, delta_bias = (t.double() for t in (u, delta, A, B, C, D, delta_bias))
    batch, _, channels = u.shape
    dt = delta + delta_bias.view(4, 1, 1, channels)
    dt = torch.nn.functional.softplus(dt) if delta_softplus else dt
    A, D = A.view(4, channels, -1), D.view(4, channels)
    y = u * D.sum(0)
    for route, order in enumerate(visiting_orders(height, width)):
        h = u.new_zeros(batch, channels, A.shape[-1])
        for p in order:
            step = dt[route, :, p, :, None]  # (batch, channels, 1)
            h = torch.exp(step * A[route]) * h + step * u[:, p, :, None] * B[:, p, None, route]
            y[:, p] += (h * C[:, p, None, route]).sum(-1)
    return y


def make_inputs(batch=2, channels=5, n_state=16, height=6, width=9, seed=0, delta_softplus=True):
    """VMamba's call (raw steps, biased and softplus-activated by the scan), or with `delta_softplus=False`
    positive steps used as they are."""
    gen = torch.Generator().manual_seed(seed)
    length = height * width
    delta = torch.randn(4, batch, length, channels, generator=gen) - 1
    return dict(
        u=torch.randn(batch, length, channels, generator=gen),
        delta=delta if delta_softplus else torch.nn.functional.softplus(delta),
        delta_bias=torch.randn(4 * channels, generator=gen) if delta_softplus else torch.zeros(4 * channels),
        delta_softplus=delta_softplus,
        A=-torch.exp(torch.randn(4 * channels, n_state, generator=gen)),
        B=torch.randn(batch, length, 4, n_state, generator=gen),
        C=torch.randn(batch, length, 4, n_state, generator=gen),
        D=torch.randn(4 * channels, generator=gen),
        height=height,
        width=width,
    )


def relative_error(y, expected):
    return ((y.double() - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("channels, n_state, height, width", SHAPES)
@pytest.mark.parametrize("delta_softplus", [True, False])
def test_matches_the_step_by_step_loop(backend, channels, n_state, height, width, delta_softplus):
    inputs = make_inputs(channels=channels, n_state=n_state, height=height, width=width, delta_softplus=delta_softplus)
    with torch.no_grad():
        y = cross_scan_2d(**inputs, backend=backend)
    assert y.shape == inputs["u"].shape and y.dtype == torch.float32 and y.is_contiguous()
    assert relative_error(y, step_by_step_reference(**inputs)) <= 1e-5


@needs_kernel
@pytest.mark.parametrize("route", range(4))
@pytest.mark.parametrize("channels, n_state, height, width", SHAPES[:4])
def test_each_route_of_the_fused_kernel_matches_the_route_by_route_kernel(route, channels, n_state, height, width):
    """One route at a time (the others' C and every D zeroed): a wrong visiting order cannot hide in the sum."""
    inputs = make_inputs(channels=channels, n_state=n_state, height=height, width=width, seed=route + 1)
    others = [k for k in range(4) if k != route]
    inputs["C"][:, :, others] = 0
    inputs["D"] = torch.zeros_like(inputs["D"])
    with torch.no_grad():
        fused = cross_scan_2d(**inputs, backend="fused")
        routed = cross_scan_2d(**inputs, backend="kernel")
    assert fused.abs().max() > 0
    assert relative_error(fused, routed.double()) <= 1e-6


@needs_kernel
def test_fused_softplus_matches_torch_over_its_whole_range():
    """On a 1x1 grid with A = 0, N = 1, B = C = u = 1 and one route, y is the step itself: softplus(delta + bias),
    checked element by element from e^-40 (where log1p's accuracy matters) past torch's threshold of 20."""
    channels, batch = 37, 8
    delta = torch.zeros(4, batch, 1, channels)
    delta[0] = torch.linspace(-40, 40, batch * channels).view(batch, 1, channels)
    bias = torch.zeros(4 * channels)
    bias[:channels] = 0.25
    C = torch.zeros(batch, 1, 4, 1)
    C[:, :, 0] = 1
    with torch.no_grad():
        y = cross_scan_2d(torch.ones(batch, 1, channels), delta, torch.zeros(4 * channels, 1), torch.ones(batch, 1, 4, 1),
                          C, torch.zeros(4 * channels), 1, 1, delta_bias=bias, delta_softplus=True, backend="fused")
    expected = torch.nn.functional.softplus((delta[0] + 0.25).double())
    assert ((y.double() - expected).abs() / expected).max() <= 1e-6


@needs_kernel
def test_fused_reads_strided_B_and_C_in_place_with_the_same_result():
    """B and C arrive as views into the x_proj output (pixel stride 4 * (R + 2N)): no copy, same values."""
    inputs = make_inputs(channels=37, height=5, width=7)
    batch, length, _, n_state = inputs["B"].shape
    x_dbl = torch.randn(batch, length, 4, 6 + 2 * n_state)
    x_dbl[..., 6:6 + n_state], x_dbl[..., 6 + n_state:] = inputs["B"], inputs["C"]
    _, B_view, C_view = x_dbl.split([6, n_state, n_state], dim=-1)
    with torch.no_grad():
        y_views = cross_scan_2d(**{**inputs, "B": B_view, "C": C_view}, backend="fused")
        y_copies = cross_scan_2d(**inputs, backend="fused")
    assert torch.equal(y_views, y_copies)


@needs_kernel
def test_auto_fuses_without_gradients_only(monkeypatch):
    """The fused kernel has no backward: with gradients the differentiable route-by-route path must run."""
    calls = []
    monkeypatch.setattr(cpu_kernel, "cross_scan_forward",
                        lambda *args: calls.append(1) or torch.zeros_like(args[0]))
    inputs = make_inputs()
    with torch.no_grad():
        cross_scan_2d(**inputs)
    assert calls == [1]
    inputs["u"].requires_grad_()
    y = cross_scan_2d(**inputs)
    assert calls == [1] and y.requires_grad
    y.sum().backward()
    assert inputs["u"].grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="without gradients"):
        cross_scan_2d(**inputs, backend="fused")


def test_rejects_inputs_of_another_grid():
    inputs = make_inputs(height=6, width=9)
    with pytest.raises(ValueError, match="6x8 grid"):
        cross_scan_2d(**{**inputs, "width": 8})
