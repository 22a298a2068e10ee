"""Anomaly maps: the torch Gaussian equals scipy's, and the map lights up where features disagree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from pdd.models.anomaly_map import AnomalyMapGenerator, ChannelUnits, GaussianBlur, cosine_distance_map


@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 37, 50), (1, 9, 13), (1, 1, 5)])
def test_gaussian_blur_equals_scipy(shape):
    """Includes maps smaller than the kernel radius (16), where scipy reflects more than once."""
    maps = torch.rand(shape, generator=torch.Generator().manual_seed(3)) * 3.0
    expected = np.stack([gaussian_filter(m, sigma=4, truncate=4, mode="reflect") for m in maps.double().numpy()])
    got = GaussianBlur(sigma=4.0)(maps)
    assert got.shape == maps.shape
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


def test_cosine_distance_map_per_position():
    a = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(4))
    b = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(5))
    got = cosine_distance_map(a, b)
    an, bn = a.numpy(), b.numpy()
    expected = 1 - (an * bn).sum(1) / (np.linalg.norm(an, axis=1) * np.linalg.norm(bn, axis=1))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("layouts", [("nchw", "nchw"), ("channels_last", "channels_last"), ("channels_last", "nchw")])
def test_cosine_distance_map_is_torchs_cosine_bit_for_bit_with_shared_normalisations(layouts):
    """The maps normalise each feature map once for all its pairs (ts, ss); every map must still be exactly
    1 - F.cosine_similarity, the authors' call, in every layout the models produce and with all-zero vectors
    (where the norm is clamped to eps)."""
    gen = torch.Generator().manual_seed(7)
    shape = (3, 96, 17, 13)
    maps = [torch.randn(shape, generator=gen) * scale for scale in (1.0, 3e-3, 40.0)]
    maps[1][:, :, 2:4, 5] = 0.0
    maps[2][0, :, 0, 0] = 0.0
    maps = [m.contiguous(memory_format=torch.channels_last) if layouts[i % 2] == "channels_last" else m
            for i, m in enumerate(maps)]
    units = ChannelUnits()
    for a, b in [(maps[0], maps[1]), (maps[2], maps[1]), (maps[0], maps[2]), (maps[1], maps[1])]:
        expected = 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-8)
        assert torch.equal(cosine_distance_map(a, b, units), expected)
        assert torch.equal(cosine_distance_map(a, b), expected)


def test_map_is_zero_for_identical_features_and_peaks_at_a_disagreement():
    gen = torch.Generator().manual_seed(6)
    reference = [torch.rand(1, c, s, s, generator=gen) + 0.1 for c, s in ((8, 16), (16, 8), (32, 4))]
    generator = AnomalyMapGenerator()
    maps, scores = generator(list(zip(reference, reference)), (64, 64))
    assert maps.shape == (1, 64, 64)
    assert scores.item() == pytest.approx(0.0, abs=1e-5)

    student = [r.clone() for r in reference]
    student[0][:, :, 12:14, 2:4] = -student[0][:, :, 12:14, 2:4]  # rows 48-55, cols 8-15 of the input
    maps, scores = generator(list(zip(student, reference)), (64, 64))
    peak_row, peak_col = divmod(int(maps[0].argmax()), 64)
    assert 44 <= peak_row <= 58 and 4 <= peak_col <= 18
    assert scores.item() == pytest.approx(maps.max().item())
    assert scores.item() > 0.1


def test_map_sigma_option_sets_the_smoothing_of_the_model_maps(tiny_pdd, images):
    """`map_sigma` (params eval.sigma) reaches the map: smoothing the sigma-1e-3 map with scipy at sigma 2
    gives the sigma-2 model's map (a Gaussian that narrow is the identity to float precision)."""
    narrow, wide = tiny_pdd(map_sigma=1e-3).eval(), tiny_pdd(map_sigma=2.0).eval()
    with torch.no_grad():
        features = narrow.teacher_features(images[:1])
        raw, _ = narrow.anomaly_map(None, features=features)
        smoothed, scores = wide.anomaly_map(None, features=features)
    expected = gaussian_filter(raw[0].double().numpy(), sigma=2, truncate=4, mode="reflect")
    np.testing.assert_allclose(smoothed[0].numpy(), expected, atol=1e-5, rtol=0)
    assert scores.item() == pytest.approx(float(expected.max()), abs=1e-5)
