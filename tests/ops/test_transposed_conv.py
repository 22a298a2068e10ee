"""ConvTranspose2x2 against nn.ConvTranspose2d: the same module, forward and input gradient bit for bit, the
weight gradient by one GEMM that is at least as close to float64 as oneDNN's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pdd.ops import transposed_conv
from pdd.ops.transposed_conv import ConvTranspose2x2

CHANNELS_LAST = torch.channels_last


def twins(in_channels: int, out_channels: int, weight_format=CHANNELS_LAST) -> tuple[nn.Module, nn.Module]:
    """Ours and the stock module, built from one seed (so the init must draw the same numbers)."""
    torch.manual_seed(0)
    ours = ConvTranspose2x2(in_channels, out_channels)
    torch.manual_seed(0)
    stock = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)
    return ours.to(memory_format=weight_format), stock.to(memory_format=weight_format)


def run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor, input_grad: bool = True):
    module.zero_grad(set_to_none=True)
    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(input_grad)
    y = module(leaf)
    y.backward(grad)
    return y, leaf.grad, module.weight.grad


def inputs(shape, out_channels, memory_format=CHANNELS_LAST, seed=0):
    """Post-ReLU inputs (as in the students) and an output gradient, both in `memory_format`."""
    gen = torch.Generator().manual_seed(seed)
    batch, _, height, width = shape
    x = torch.randn(shape, generator=gen).relu().contiguous(memory_format=memory_format)
    grad = torch.randn(batch, out_channels, 2 * height, 2 * width, generator=gen)
    return x, grad.contiguous(memory_format=memory_format)


def test_it_is_the_stock_module_in_parameters_init_and_state_dict_keys():
    ours, stock = twins(12, 8)
    assert isinstance(ours, nn.ConvTranspose2d)
    assert ours.state_dict().keys() == stock.state_dict().keys() == {"weight"}
    assert torch.equal(ours.weight, stock.weight)
    assert (ours.kernel_size, ours.stride, ours.padding, ours.bias) == ((2, 2), (2, 2), (0, 0), None)


@pytest.mark.parametrize("shape, out_channels", [((2, 16, 8, 8), 8), ((3, 5, 4, 7), 9), ((1, 32, 1, 3), 32)])
@pytest.mark.parametrize("input_grad", [True, False])
def test_forward_and_input_gradient_are_bit_identical_and_the_weight_gradient_is_close(shape, out_channels, input_grad):
    ours, stock = twins(shape[1], out_channels)
    x, grad = inputs(shape, out_channels)
    y, x_grad, w_grad = run(ours, x, grad, input_grad)
    assert type(y.grad_fn).__name__ == "_TransposedConv2x2Backward", "the GEMM path must be the one tested"
    y_ref, x_grad_ref, w_grad_ref = run(stock, x, grad, input_grad)
    assert torch.equal(y, y_ref) and y.stride() == y_ref.stride()
    if input_grad:
        assert torch.equal(x_grad, x_grad_ref) and x_grad.stride() == x_grad_ref.stride()
    else:
        assert x_grad is None
    torch.testing.assert_close(w_grad, w_grad_ref, rtol=1e-5, atol=1e-6)
    assert w_grad.stride() == ours.weight.stride(), "the gradient is laid out like the weight"


def test_a_contiguous_weight_gets_a_contiguous_gradient():
    ours, stock = twins(16, 8, weight_format=torch.contiguous_format)
    x, grad = inputs((2, 16, 4, 4), 8)
    _, _, w_grad = run(ours, x, grad)
    assert w_grad.is_contiguous()
    torch.testing.assert_close(w_grad, run(stock, x, grad)[2], rtol=1e-5, atol=1e-6)


def test_the_weight_gradient_is_at_least_as_close_to_float64_as_onednns():
    """10 x 32 x 32 pixels: oneDNN sums them in one long chain (measured 1.7e-6 of the largest entry off
    float64), the GEMM in blocks (3e-7)."""
    ours, stock = twins(64, 64)
    x, grad = inputs((10, 64, 32, 32), 64)
    _, _, w_grad = run(ours, x, grad)
    _, _, w_stock = run(stock, x, grad)
    truth = run(stock.double(), x.double(), grad.double())[2]

    def error(w):
        return ((w.double() - truth).abs().max() / truth.abs().max()).item()

    assert not torch.equal(w_grad, w_stock), "the two sum in different orders: this shape must tell them apart"
    assert error(w_grad) <= error(w_stock)
    assert error(w_grad) < 1e-6


@pytest.mark.parametrize("case", ["nchw", "float64", "no_grad", "frozen"])
def test_everything_else_takes_the_stock_path(case, monkeypatch):
    """NCHW input (M1, RD4AD's numerics), float64, no autograd or a frozen weight: nn.ConvTranspose2d itself."""
    monkeypatch.setattr(transposed_conv, "weight_gradient", lambda *args: pytest.fail("GEMM path taken"))
    ours, stock = twins(16, 8)
    x, grad = inputs((2, 16, 4, 4), 8, memory_format=torch.contiguous_format if case == "nchw" else CHANNELS_LAST)
    if case == "float64":
        ours, stock, x, grad = ours.double(), stock.double(), x.double(), grad.double()
    if case == "no_grad":
        with torch.no_grad():
            assert ours(x).grad_fn is None and torch.equal(ours(x), stock(x))
        return
    if case == "frozen":
        ours.weight.requires_grad_(False)
        stock.weight.requires_grad_(False)
    y, x_grad, w_grad = run(ours, x, grad)
    y_ref, x_grad_ref, w_grad_ref = run(stock, x, grad)
    assert type(y.grad_fn).__name__ != "_TransposedConv2x2Backward"
    assert torch.equal(y, y_ref) and torch.equal(x_grad, x_grad_ref)
    assert (w_grad is None and w_grad_ref is None) or torch.equal(w_grad, w_grad_ref)


def test_autocast_takes_the_stock_path(monkeypatch):
    monkeypatch.setattr(transposed_conv, "weight_gradient", lambda *args: pytest.fail("GEMM path taken"))
    ours, _ = twins(16, 8)
    x, _ = inputs((2, 16, 4, 4), 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert ours.weight.grad is not None
