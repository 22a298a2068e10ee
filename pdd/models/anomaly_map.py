"""Anomaly maps and image scores (pdd_official_code.md §4.1), entirely in torch.

The map is the sum over levels (and compared pairs) of the per-pixel channel distance 1 - cos, upsampled
bilinearly (align_corners=True) to the input size, then smoothed by a Gaussian of sigma 4 that reproduces
`scipy.ndimage.gaussian_filter(sigma=4, truncate=4, mode="reflect")`; the image score is the map's maximum.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


COSINE_EPS = 1e-8  # F.cosine_similarity's default, what the authors' maps use


def channel_units(x: torch.Tensor) -> torch.Tensor:
    """`x`'s channel vectors divided by their L2 norms (clamped to COSINE_EPS): the first half of
    `F.cosine_similarity(dim=1)`, in its own operations and order (ATen's Distance.cpp), so that a map made from
    two of these is bit-identical to it (tests/models/test_pdd_anomaly_map.py checks that against torch)."""
    return x / torch.linalg.vector_norm(x, 2, dim=1, keepdim=True).clamp_min(COSINE_EPS)


class ChannelUnits:
    """`channel_units` of each feature map, computed once however many pairs the map is in: `ts` compares both
    students with the same targets, and `ss` compares the same two students again, so 9 normalisations serve
    the 18 sides of `full`'s two scorings. Maps are recognised by identity and held while the memo lives."""

    def __init__(self) -> None:
        self._units: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        held = self._units.get(id(x))
        if held is None:
            held = self._units[id(x)] = (x, channel_units(x))
        return held[1]


def cosine_distance_map(a: torch.Tensor, b: torch.Tensor, units: ChannelUnits | None = None) -> torch.Tensor:
    """B x H x W map of 1 - cos between the channel vectors of `a` and `b` at each position; equal, bit for bit,
    to `1 - F.cosine_similarity(a, b, dim=1, eps=1e-8)`. `units` shares the normalisations between calls."""
    units = units if units is not None else ChannelUnits()
    return 1.0 - (units(a) * units(b)).sum(dim=1)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy's normalised 1-D Gaussian: radius int(truncate * sigma + 0.5), computed in float64."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _symmetric_indices(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices that extend an axis by `radius` on both sides with scipy's "reflect" rule (d c b a | a b c d),
    repeating the reflection when the radius exceeds the axis length."""
    index = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(index < size, index, 2 * size - 1 - index)


class GaussianBlur(nn.Module):
    """Separable Gaussian smoothing of B x H x W maps, equal to scipy's `gaussian_filter` in "reflect" mode."""

    def __init__(self, sigma: float = 4.0, truncate: float = 4.0) -> None:
        super().__init__()
        self.register_buffer("kernel", gaussian_kernel1d(sigma, truncate), persistent=False)
        self.radius = (self.kernel.numel() - 1) // 2

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel.to(maps.dtype)
        height, width = maps.shape[-2:]
        x = maps.unsqueeze(1)
        x = x.index_select(2, _symmetric_indices(height, self.radius, maps.device))
        x = F.conv2d(x, kernel.view(1, 1, -1, 1))
        x = x.index_select(3, _symmetric_indices(width, self.radius, maps.device))
        x = F.conv2d(x, kernel.view(1, 1, 1, -1))
        return x.squeeze(1)


class AnomalyMapGenerator(nn.Module):
    """Turns (student, reference) feature pairs into smoothed input-size maps and max-pooled image scores."""

    def __init__(self, sigma: float = 4.0, truncate: float = 4.0) -> None:
        super().__init__()
        self.blur = GaussianBlur(sigma, truncate)

    def forward(
        self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], image_size: tuple[int, int],
        units: ChannelUnits | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The smoothed maps and image scores of `pairs`; `units` shares the maps' normalisations with other
        calls on the same feature maps (another scoring)."""
        units = units if units is not None else ChannelUnits()
        total = None
        for student, reference in pairs:
            distance = cosine_distance_map(student, reference, units).unsqueeze(1)
            distance = F.interpolate(distance, size=image_size, mode="bilinear", align_corners=True).squeeze(1)
            total = distance if total is None else total + distance
        if total is None:
            raise ValueError("an anomaly map needs at least one pair of feature maps")
        maps = self.blur(total)
        return maps, maps.flatten(1).amax(dim=1)
