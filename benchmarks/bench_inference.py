"""Scoring throughput on the CPU: teachers + students + anomaly map + Gaussian smoothing, per image."""

from __future__ import annotations

import torch

from benchmarks.common import Ratio, Settings, median_seconds
from pdd.models import build_pdd


def run(settings: Settings) -> dict:
    batch, size = (2 if settings.quick else 8), settings.image_size
    torch.manual_seed(0)
    model = build_pdd("full", "code", pretrained=False).eval()
    images = torch.randn(batch, 3, size, size)
    report: dict = {"batch": batch, "size": size}
    with torch.inference_mode():
        seconds, _ = median_seconds(lambda: model.anomaly_map(images, "ts"), settings.repeats)
        features = model.teacher_features(images)
        cached_s, _ = median_seconds(lambda: model.anomaly_map(None, "ts", features=features), settings.repeats)
    report["images_per_s"] = batch / seconds
    report["images_per_s_cached_features"] = batch / cached_s
    report["ratios"] = [
        Ratio(f"scoring `full` ts, images/s ({size}², batch {batch})", report["images_per_s"], unit="img/s",
              detail="teachers + students + map + smoothing"),
        Ratio("scoring with cached teacher features vs from images", seconds / cached_s,
              detail=f"{report['images_per_s_cached_features']:.2f} img/s from cached features"),
    ]
    return report
