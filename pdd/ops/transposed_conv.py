"""The students' 2x2 stride-2 transposed convolution, with its weight gradient computed as one matrix product.

A 2x2 transposed convolution with stride 2 has no overlapping windows: every input pixel writes its own 2x2
block of the output, ``y[n, o, 2i + a, 2j + b] = sum_c x[n, c, i, j] * w[c, o, a, b]``. Its weight gradient
is therefore one GEMM over the pixels, ``dw[c, (a, b, o)] = sum_(n, i, j) x[(n, i, j), c] * dy[(n, i, j), (a, b, o)]``,
on the channels-last memory of x as it is and one copy of dy into (pixel, a, b, o) rows. oneDNN's own
weight-gradient kernel for it runs at 96-171 GFLOP/s on the development CPU (its 3x3 kernels at ~300); on
the `full` step's shapes the GEMM runs at 260-325, 1.75-2.7x faster, and closer to float64: oneDNN sums the
pixels in one long chain (max error vs float64 0.7-2.7e-6 of the largest entry, growing with the pixel
count), the GEMM in blocks (2.8-4.6e-7 at every size). Figures: benchmarks/README.md; the accuracy check:
tests/ops/test_transposed_conv.py.

Only that rounding changes. The forward and the input gradient are oneDNN's own calls, bit for bit those of
`nn.ConvTranspose2d` (so the students' outputs, and every gradient upstream of a transposed convolution,
stay the authors'); the path is taken for float32 CPU tensors in channels_last memory outside autocast, the
layout of every variant that reads VMamba's taps. M1 (RD4AD) reads wide-ResNet's NCHW maps and keeps
oneDNN's kernel and RD4AD's numerics; GPUs keep cuDNN's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

STRIDE = 2


class ConvTranspose2x2(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d(in, out, 2, stride=2, bias=False)` (same parameters, init and state-dict keys) whose
    CPU channels-last weight gradient is a GEMM (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, STRIDE, stride=STRIDE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _takes_gemm_path(x, self.weight):
            return _TransposedConv2x2.apply(x, self.weight)
        return super().forward(x)


def _takes_gemm_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (weight.requires_grad and torch.is_grad_enabled() and x.dim() == 4
            and x.dtype == weight.dtype == torch.float32 and x.device.type == weight.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu")
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


class _TransposedConv2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv_transpose2d(x, weight, stride=STRIDE)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_input, need_weight = ctx.needs_input_grad
        grad_input = None
        if need_input:  # oneDNN's input gradient, as autograd computes it for nn.ConvTranspose2d
            grad_input = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [STRIDE, STRIDE], [0, 0], [1, 1], True, [0, 0], 1, [True, False, False])[0]
        return grad_input, weight_gradient(grad, x, weight) if need_weight else None


def weight_gradient(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """d loss / d weight of the 2x2 stride-2 transposed convolution y = conv_transpose2d(x, weight, stride=2),
    from grad = d loss / d y: one GEMM over the pixels, laid out like `weight`."""
    batch, in_channels, height, width = x.shape
    out_channels = weight.shape[1]
    pixels = x.permute(0, 2, 3, 1).reshape(batch * height * width, in_channels)  # a view of channels_last x
    # (n, 2i + a, 2j + b, o) -> rows (n, i, j), columns (a, b, o): the one copy
    blocks = (grad.permute(0, 2, 3, 1).reshape(batch, height, STRIDE, width, STRIDE, out_channels)
              .permute(0, 1, 3, 2, 4, 5).reshape(batch * height * width, STRIDE * STRIDE * out_channels))
    # (c, a, b, o) memory is the channels_last layout of a (c, o, a, b) weight
    product = (pixels.t() @ blocks).view(in_channels, STRIDE, STRIDE, out_channels).permute(0, 3, 1, 2)
    return product.contiguous() if weight.is_contiguous() else product
