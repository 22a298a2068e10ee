"""Trainable modules between the teachers and the students: the channel adapter (InA / MMU) and the MPA.

Layer design and parameter counts follow the released code (reference: pdd_official_code.md §1.3-1.5); where
that differs from the paper's wording (paper eq. 3, eq. 6) docs/model.md says how.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdd.ops.fused_loss import nchw_contiguous


def resize_like(x: torch.Tensor, reference: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinear resize of `x` to the spatial size of `reference`; a no-op when the sizes already agree."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=align_corners)


class _NCHWGradient(torch.autograd.Function):
    """The identity, whose backward hands its gradient on in NCHW memory."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return nchw_contiguous(grad)


def nchw_gradient(x: torch.Tensor) -> torch.Tensor:
    """`x`, with the gradient that flows back through it made NCHW first.

    The InA targets' gradients reach the bilinear upsampling's backward, whose CPU kernel sums in another order
    for channels-last gradients. The authors' losses flatten their maps, so those gradients arrive NCHW there;
    ours (pdd.ops.fused_loss) keep the students' channels-last layout, which is faster everywhere else. Pinning
    the layout here keeps the upsampling's rounding the authors' (tests/models/test_pdd_model.py).
    """
    return _NCHWGradient.apply(x) if x.requires_grad else x


def conv_bn(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel - 1) // 2
    return [
        nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class ChannelAdapter(nn.Module):
    """Maps a VMamba tap to a wide-ResNet width: GELU(1x1 -> dilated 3x3 -> 1x1 (+BN each) + 1x1 projection).

    The bottleneck width is max(in, out) / 4, as in the released code (the "EfficientChannelAdapter").
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 4) -> None:
        super().__init__()
        width = max(in_channels // reduction, out_channels // reduction)
        self.main = nn.Sequential(
            *conv_bn(in_channels, width),
            nn.GELU(),
            *conv_bn(width, width, kernel=3, dilation=2),
            nn.GELU(),
            *conv_bn(width, out_channels),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.main(x) + self.shortcut(x))


class TeacherFusion(nn.Module):
    """InA (three shallow levels) and MMU (the tail): adapted VMamba features added to the wide-ResNet ones.

    `forward` returns the distillation targets T64, T32, T16 (highest resolution first) and the fused tail F0
    that every student decodes. VMamba taps are half the resolution of their ResNet partners, hence the
    bilinear (align_corners=True) upsampling of the three InA levels. The widths are the teachers'
    `channels` (their feature_info): Z0..Z3 in, R1..R4 out.
    """

    def __init__(self, vmamba_channels: Sequence[int], wrn_channels: Sequence[int]) -> None:
        super().__init__()
        self.ina = nn.ModuleList(
            ChannelAdapter(c_in, c_out) for c_in, c_out in zip(vmamba_channels[:3], wrn_channels[:3], strict=True)
        )
        self.mmu = ChannelAdapter(vmamba_channels[3], wrn_channels[3])
        self.code_channels = wrn_channels[3]  # the fused tail F0 is R4 plus the adapted Z3

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        targets = [
            nchw_gradient(resize_like(adapter(features[f"Z{level}"]), features[f"R{level + 1}"], align_corners=True))
            + features[f"R{level + 1}"]
            for level, adapter in enumerate(self.ina)
        ]
        tail = resize_like(self.mmu(features["Z3"]), features["R4"], align_corners=True) + features["R4"]
        return targets, tail


class ManifoldPriorAffine(nn.Module):
    """MPA: priors for the student's 2nd and 3rd stages, projected from the fused tail (paper eq. 6).

    A shared 1x1 conv+BN+GELU, then one plain 1x1 head per injection point, each resized bilinearly
    (align_corners=False) to twice and four times the tail's resolution. `in_channels` is the tail's width and
    `out_channels` the widths of the student stages the priors are added to.
    """

    def __init__(self, in_channels: int, out_channels: Sequence[int], hidden: int = 1024) -> None:
        super().__init__()
        self.shared = nn.Sequential(*conv_bn(in_channels, hidden), nn.GELU())
        self.heads = nn.ModuleList(nn.Conv2d(hidden, c, 1, bias=False) for c in out_channels)

    def forward(self, tail: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.shared(tail)
        height, width = tail.shape[-2:]
        return [
            F.interpolate(head(hidden), size=(height * 2**k, width * 2**k), mode="bilinear", align_corners=False)
            for k, head in enumerate(self.heads, start=1)
        ]
