"""cross_scan_2d (VMamba's four-route scan) against route-by-route scans over explicitly listed pixel orders."""

from __future__ import annotations

import pytest
import torch

from pdd.ops import available_backends, cpu_kernel, cross_scan_2d, selective_scan
needs_kernel = pytest.mark.skipif("kernel" not in available_backends(), reason="no C compiler")


def visiting_orders(height: int, width: int) -> list[list[int]]:
    """Pixel indices in the order each route visits them, written out with plain loops."""
    row_major = [r * width + c for r in range(height) for c in range(width)]
    column_major = [r * width + c for c in range(width) for r in range(height)]
    return [row_major, column_major, row_major[::-1], column_major[::-1]]


def reference(u, dt, A, B, C, D, height, width):
    """Scan each route separately in float64, then scatter its outputs back to their pixels and sum."""
    u, dt, A, B, C, D = (t.double() for t in (u, dt, A, B, C, D))
    channels = u.shape[1]
    y = torch.zeros_like(u)
    for route, order in enumerate(visiting_orders(height, width)):
        index = torch.tensor(order)
        part = slice(route * channels, (route + 1) * channels)
        scanned = selective_scan(u[..., index], dt[:, route][..., index], A[part], B[:, route][..., index],
                                 C[:, route][..., index], D[part], backend="torch")
        y[..., index] += scanned
    return y


def make_inputs(batch=2, channels=5, n_state=16, height=6, width=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = height * width
    return dict(
        u=torch.randn(batch, channels, length, generator=gen),
        dt=torch.nn.functional.softplus(torch.randn(batch, 4, channels, length, generator=gen) - 1),
        A=-torch.exp(torch.randn(4 * channels, n_state, generator=gen)),
        B=torch.randn(batch, 4, n_state, length, generator=gen),
        C=torch.randn(batch, 4, n_state, length, generator=gen),
        D=torch.randn(4 * channels, generator=gen),
        height=height,
        width=width,
    )


def relative_error(y, expected):
    return ((y.double() - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("backend", ["torch", pytest.param("kernel", marks=needs_kernel),
                                     pytest.param("fused", marks=needs_kernel)])
@pytest.mark.parametrize("n_state, height, width", [(16, 6, 9), (3, 7, 4), (16, 1, 5)])
def test_matches_route_by_route_scans(backend, n_state, height, width):
    inputs = make_inputs(n_state=n_state, height=height, width=width)
    with torch.no_grad():
        y = cross_scan_2d(**inputs, backend=backend)
    assert y.shape == inputs["u"].shape and y.dtype == torch.float32
    assert relative_error(y, reference(**inputs)) <= 1e-5


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
