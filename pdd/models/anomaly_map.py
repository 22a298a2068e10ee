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


def cosine_distance_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """B x H x W map of 1 - cos between the channel vectors of `a` and `b` at each position."""
    return 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-8)


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
        self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        total = None
        for student, reference in pairs:
            distance = cosine_distance_map(student, reference).unsqueeze(1)
            distance = F.interpolate(distance, size=image_size, mode="bilinear", align_corners=True).squeeze(1)
            total = distance if total is None else total + distance
        if total is None:
            raise ValueError("an anomaly map needs at least one pair of feature maps")
        maps = self.blur(total)
        return maps, maps.flatten(1).amax(dim=1)
