"""The fused global cosine and MSE against the stock PyTorch ops they replace: equal bit for bit, in values
and in gradients, with the gradients laid out like the inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pdd.ops import cpu_kernel
from pdd.ops.fused_loss import global_cosine_similarity, mse_loss, nchw_contiguous

needs_kernel = pytest.mark.skipif(cpu_kernel.load_cosine_kernel() is None, reason="no C compiler for the kernel")
EPS = 1e-8


def stock_cosine(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(x1.flatten(1), x2.flatten(1), dim=1, eps=EPS)


def pair(shape, memory_format, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated maps (a cosine far from 0), with a zero sample and a sample whose norm is below eps (both
    clamped; the zero one also takes the norm backward's masked branch) when the batch has room."""
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randn(shape, generator=gen)
    x2 = 0.6 * x1 + torch.randn(shape, generator=gen)
    if shape[0] >= 3:
        x1[1] = 0.0
        x2[2] *= 1e-12
    return (x1.contiguous(memory_format=memory_format), x2.contiguous(memory_format=memory_format))


def gradients(function, x1, x2, weights, needs=(True, True)):
    leaves = [x.detach().clone().requires_grad_(need) for x, need in zip((x1, x2), needs)]
    value = function(*leaves)
    (value * weights).sum().backward()
    return value, [leaf.grad for leaf in leaves]


LAYOUTS = [torch.contiguous_format, torch.channels_last]
SHAPES = [(4, 6, 5, 7), (3, 16, 8, 8), (1, 3, 1, 9)]


@needs_kernel
@pytest.mark.parametrize("memory_format", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)])
def test_global_cosine_equals_torch_bit_for_bit(shape, memory_format, needs):
    x1, x2 = pair(shape, memory_format)
    weights = torch.randn(shape[0], generator=torch.Generator().manual_seed(1))
    ours, our_grads = gradients(global_cosine_similarity, x1, x2, weights, needs)
    theirs, their_grads = gradients(stock_cosine, x1, x2, weights, needs)
    assert type(ours.grad_fn).__name__ == "GlobalCosineBackward", "the fused path must be the one tested"
    assert torch.equal(ours, theirs)
    for x, need, mine, stock in zip((x1, x2), needs, our_grads, their_grads):
        if not need:
            assert mine is None
            continue
        assert torch.equal(mine, stock)
        assert mine.stride() == x.stride(), "the gradient keeps the input's layout"


@needs_kernel
@pytest.mark.parametrize("threads", [1, 3])
def test_global_cosine_splits_rows_over_threads_anywhere(threads):
    """Odd sizes over 3 threads cut rows in the middle: every element is still computed once."""
    x1, x2 = pair((5, 7, 3, 11), torch.channels_last, seed=2)
    weights = torch.randn(5, generator=torch.Generator().manual_seed(3))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours, our_grads = gradients(global_cosine_similarity, x1, x2, weights)
    finally:
        torch.set_num_threads(previous)
    theirs, their_grads = gradients(stock_cosine, x1, x2, weights)
    assert torch.equal(ours, theirs)
    assert all(torch.equal(a, b) for a, b in zip(our_grads, their_grads))


@pytest.mark.parametrize("memory_format", LAYOUTS)
@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)])
def test_mse_equals_torch_bit_for_bit_with_gradients_in_the_inputs_layout(memory_format, needs):
    x1, x2 = pair((3, 16, 8, 8), memory_format)
    ours, our_grads = gradients(mse_loss, x1, x2, torch.tensor(0.7), needs)
    theirs, their_grads = gradients(F.mse_loss, x1, x2, torch.tensor(0.7), needs)
    assert type(ours.grad_fn).__name__ == "MeanSquaredErrorBackward"
    assert torch.equal(ours, theirs)
    for x, need, mine, stock in zip((x1, x2), needs, our_grads, their_grads):
        assert (mine is None) is not need
        if need:
            assert torch.equal(mine, stock) and mine.stride() == x.stride()


def test_inputs_the_passes_do_not_cover_take_the_stock_ops():
    """Mixed layouts (one flat offset means different elements in the two) go to torch, and so does a float64
    cosine (the C passes are float32; the MSE's backward is torch's own kernel for any dtype)."""
    x1, x2 = pair((3, 16, 8, 8), torch.contiguous_format)
    mixed = x2.contiguous(memory_format=torch.channels_last).requires_grad_()
    x1 = x1.requires_grad_()
    cosine, mse = global_cosine_similarity(x1, mixed), mse_loss(x1, mixed)
    assert type(cosine.grad_fn).__name__ != "GlobalCosineBackward" and torch.equal(cosine, stock_cosine(x1, mixed))
    assert type(mse.grad_fn).__name__ != "MeanSquaredErrorBackward" and torch.equal(mse, F.mse_loss(x1, mixed))
    wide1, wide2 = x1.double(), x2.double()
    cosine = global_cosine_similarity(wide1, wide2)
    assert type(cosine.grad_fn).__name__ != "GlobalCosineBackward" and torch.equal(cosine, stock_cosine(wide1, wide2))


def test_the_cosine_kernel_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("PDD_COSINE_KERNEL", "0")
    assert cpu_kernel.load_cosine_kernel.__wrapped__() is None


@needs_kernel
@pytest.mark.parametrize("shape", [(2, 33, 5, 7), (3, 64, 8, 4), (1, 1, 3, 3), (2, 40, 1, 1)])
def test_the_tiled_copy_is_torchs(shape):
    """Tiles of 32 pixels x 32 channels with ragged edges in both directions, over 2 threads."""
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    assert torch.equal(cpu_kernel.channels_last_rows(x), x.flatten(1))
    copy = nchw_contiguous(x)
    assert copy.is_contiguous() and torch.equal(copy, x)
