"""The losses' global cosine and mean squared error, with PyTorch's numerics in fewer passes over memory.

`F.cosine_similarity` on (batch, C*H*W) rows is ``(x1 / clamp(|x1|)) * (x2 / clamp(|x2|))`` summed over
the row, and autograd walks that chain op by op: ~20 full-size passes over both inputs per forward and
backward, after torch's slow copy of a channels-last map into rows. `F.mse_loss`'s backward allocates an
NCHW gradient whatever its input's layout, so on the students' channels-last maps its kernel runs on mixed
strides (6x slower than on one layout) and every sum of gradients after it mixes layouts too.

`global_cosine_similarity` keeps PyTorch's float operations and their order but fuses the elementwise
ones into three C passes (`global_cosine.c`), leaves every reduction (the norms and the row sums) to the
same torch calls on the same row-ordered copies autograd makes (copied by a tiled C pass), and writes the
input gradients in the inputs' own layout: 3.5x faster than the stock ops at 10x256x64x64. `mse_loss` is
`F.mse_loss` whose backward calls torch's own kernel into gradients in the inputs' layout. Values and
gradients are bit-identical to the stock ops (tests/ops/test_fused_loss.py); the one op downstream whose
rounding depends on the gradient's layout, the InA upsampling, gets NCHW gradients as before
(`pdd.models.adapters.nchw_gradient`), which keeps M1 bit-identical to RD4AD and `full`/`code` to the
authors (tests/models/test_pdd_model.py). Inputs they do not cover (autocast, GPU tensors, a float64
cosine, mixed layouts, no compiler) take the stock ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from pdd.ops import cpu_kernel

MEAN = 1  # torch's Reduction::Mean, the third argument of aten::mse_loss_backward


def global_cosine_similarity(x1: torch.Tensor, x2: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The cosine of each sample pair over all its elements: F.cosine_similarity(x1.flatten(1),
    x2.flatten(1), dim=1, eps=eps), shape (batch,)."""
    if _same_dense_layout(x1, x2) and x1.dtype == torch.float32 and cpu_kernel.load_cosine_kernel() is not None:
        return GlobalCosine.apply(x1, x2, eps)
    return F.cosine_similarity(x1.flatten(1), x2.flatten(1), dim=1, eps=eps)


def mse_loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F.mse_loss(input, target) (mean reduction) whose gradients keep the inputs' layout."""
    if _same_dense_layout(input, target):
        return MeanSquaredError.apply(input, target)
    return F.mse_loss(input, target)


def _same_dense_layout(x1: torch.Tensor, x2: torch.Tensor) -> bool:
    """Both on the CPU outside autocast, of one shape and dtype and one dense layout with the samples
    outermost, so that an element's flat offset is the same in both (and in an `empty_like` of them)."""
    return (x1.shape == x2.shape and x1.dim() >= 2 and x1.stride() == x2.stride() and x1.dtype == x2.dtype
            and x1.device.type == x2.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
            and x1.numel() > 0 and _dense_samples_outermost(x1))


def _dense_samples_outermost(x: torch.Tensor) -> bool:
    memory_format = torch.channels_last if x.dim() == 4 else torch.contiguous_format
    return x.is_contiguous() or x.is_contiguous(memory_format=memory_format)


class GlobalCosine(torch.autograd.Function):
    """Samples' cosine with F.cosine_similarity's arithmetic: the norms clamped to `eps` (a copy, so that
    the norm's own backward still sees the raw norm, as in PyTorch), the normalised rows' product summed."""

    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor, eps: float) -> torch.Tensor:
        rows1, rows2 = nchw_contiguous(x1).flatten(1), nchw_contiguous(x2).flatten(1)
        raw1 = torch.linalg.vector_norm(rows1, 2, dim=1, keepdim=True)
        raw2 = torch.linalg.vector_norm(rows2, 2, dim=1, keepdim=True)
        norm1, norm2 = raw1.clamp_min(eps), raw2.clamp_min(eps)
        ctx.save_for_backward(x1, x2, rows1, rows2, raw1, raw2, norm1, norm2)
        return cpu_kernel.global_cosine_product(rows1, rows2, norm1, norm2).sum(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x1, x2, rows1, rows2, raw1, raw2, norm1, norm2 = ctx.saved_tensors
        need1, need2 = ctx.needs_input_grad[:2]
        grad = grad.contiguous()
        # the clamped norms' gradients: autograd reduces the division's `other` gradient by this row sum
        t1, t2 = cpu_kernel.global_cosine_norm_terms(rows1, rows2, norm1, norm2, grad, need1, need2)
        sum1 = torch.sum(t1, 1, keepdim=True) if need1 else None
        sum2 = torch.sum(t2, 1, keepdim=True) if need2 else None
        # elementwise from here: read and written in the inputs' own layout
        grad1 = torch.empty_like(x1) if need1 else None
        grad2 = torch.empty_like(x2) if need2 else None
        cpu_kernel.global_cosine_input_grads(x1, x2, norm1, norm2, raw1, raw2, grad, sum1, sum2, grad1, grad2)
        return grad1, grad2, None


def nchw_contiguous(x: torch.Tensor) -> torch.Tensor:
    """x.contiguous(): for a channels-last float32 map on the CPU, the same copy by the tiled C pass
    (5.8x torch's at 10x256x64x64, benchmarks/README.md)."""
    if x.is_contiguous():
        return x
    if (x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.is_contiguous(memory_format=torch.channels_last) and cpu_kernel.load_cosine_kernel() is not None):
        return cpu_kernel.channels_last_rows(x).view(x.shape)
    return x.contiguous()


class MeanSquaredError(torch.autograd.Function):
    """F.mse_loss with autograd's formula for both gradients (aten::mse_loss_backward, target's with the
    arguments swapped), written into tensors laid out like the inputs instead of NCHW ones."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(input, target)
        return F.mse_loss(input, target)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        input, target = ctx.saved_tensors
        need_input, need_target = ctx.needs_input_grad
        return (_mse_gradient(grad, input, target) if need_input else None,
                _mse_gradient(grad, target, input) if need_target else None)


def _mse_gradient(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d mse(x, y) / dx = (2 / numel) * (x - y) * grad, by torch's kernel, laid out like x."""
    return torch.ops.aten.mse_loss_backward.grad_input(grad, x, y, MEAN, grad_input=torch.empty_like(x))
