"""Teacher forward throughput: VMamba-Tiny against timm's wide_resnet50_2 (features_only), no grad,
at batch 2 and 8 (batch 2 only with --quick).

FLOPs come from torch.utils.flop_counter (matmuls and convolutions; the selective scan itself is not
counted, so VMamba's GFLOP/s understates its work). The fused cross scan is also compared with the
route-by-route scans it replaced (same kernel per route, routes materialised and flipped in memory).
"""

from __future__ import annotations

import functools

import timm
import torch

from benchmarks.common import Ratio, Settings, count_flops, median_seconds
from pdd.models import vmamba as vmamba_module
from pdd.ops import available_backends, cross_scan_2d
from pdd.models.vmamba import vmamba_tiny


def measure(model: torch.nn.Module, images: torch.Tensor, repeats: int) -> dict:
    with torch.inference_mode():
        flops = count_flops(lambda: model(images))  # also the warm-up
        seconds, _ = median_seconds(lambda: model(images), repeats, warmup=0)
    batch = images.shape[0]
    return {"seconds_per_batch": seconds, "images_per_s": batch / seconds,
            "gflops_per_image": flops / batch / 1e9, "gflops_per_s": flops / seconds / 1e9}


def run(settings: Settings) -> dict:
    batches = (2,) if settings.quick else (2, 8)
    torch.manual_seed(0)
    vmamba = vmamba_tiny().eval()
    wrn50 = timm.create_model("wide_resnet50_2", pretrained=False, features_only=True).eval()
    report, ratios = {"size": settings.image_size, "batches": list(batches)}, []
    for batch in batches:
        images = torch.randn(batch, 3, settings.image_size, settings.image_size)
        vm = report[f"vmamba_tiny_batch{batch}"] = measure(vmamba, images, settings.repeats)
        wrn = report[f"wide_resnet50_2_batch{batch}"] = measure(wrn50, images, settings.repeats)
        ratios.append(Ratio(
            f"VMamba-Tiny vs WRN50-2 forward throughput ({settings.image_size}², batch {batch})",
            vm["images_per_s"] / wrn["images_per_s"], ">= 0.6",
            detail=f"{vm['images_per_s']:.2f} vs {wrn['images_per_s']:.2f} img/s; "
                   f"{vm['gflops_per_s']:.1f} vs {wrn['gflops_per_s']:.1f} GFLOP/s counted",
        ))
    if "kernel" in available_backends():
        # The same model with the routes materialised and scanned one by one (channel-first, flipped and
        # transposed in memory), at the largest batch.
        routed = functools.partial(cross_scan_2d, backend="kernel")
        original = vmamba_module.cross_scan_2d
        vmamba_module.cross_scan_2d = routed
        try:
            unfused = report["vmamba_tiny_route_by_route"] = measure(vmamba, images, settings.repeats)
        finally:
            vmamba_module.cross_scan_2d = original
        ratios.append(Ratio(
            f"VMamba-Tiny fused channels-last cross scan vs route-by-route scans (batch {batch})",
            vm["images_per_s"] / unfused["images_per_s"], ">= 1",
            detail=f"{vm['seconds_per_batch']:.2f} vs {unfused['seconds_per_batch']:.2f} s/batch",
        ))
    report["ratios"] = ratios
    return report
