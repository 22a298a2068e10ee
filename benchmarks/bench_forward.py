"""Teacher forward throughput: VMamba-Tiny against timm's wide_resnet50_2 (features_only), no grad.

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
    batch = 2 if settings.quick else 8
    images = torch.randn(batch, 3, settings.image_size, settings.image_size)
    torch.manual_seed(0)
    vmamba = vmamba_tiny().eval()
    wrn50 = timm.create_model("wide_resnet50_2", pretrained=False, features_only=True).eval()
    report = {"batch": batch, "size": settings.image_size,
              "vmamba_tiny": measure(vmamba, images, settings.repeats),
              "wide_resnet50_2": measure(wrn50, images, settings.repeats)}
    vm, wrn = report["vmamba_tiny"], report["wide_resnet50_2"]
    ratios = [Ratio(
        f"VMamba-Tiny vs WRN50-2 forward throughput ({settings.image_size}², batch {batch})",
        vm["images_per_s"] / wrn["images_per_s"], ">= 0.5",
        detail=f"{vm['images_per_s']:.2f} vs {wrn['images_per_s']:.2f} img/s; "
               f"{vm['gflops_per_s']:.1f} vs {wrn['gflops_per_s']:.1f} GFLOP/s counted",
    )]
    if "kernel" in available_backends():
        # The same model with the routes materialised and scanned one by one (the layout before fusion).
        routed = functools.partial(cross_scan_2d, backend="kernel")
        original = vmamba_module.cross_scan_2d
        vmamba_module.cross_scan_2d = routed
        try:
            report["vmamba_tiny_route_by_route"] = measure(vmamba, images, settings.repeats)
        finally:
            vmamba_module.cross_scan_2d = original
        unfused = report["vmamba_tiny_route_by_route"]
        ratios.append(Ratio(
            "VMamba-Tiny fused cross scan vs route-by-route scans",
            vm["images_per_s"] / unfused["images_per_s"], ">= 1",
            detail=f"{vm['seconds_per_batch']:.2f} vs {unfused['seconds_per_batch']:.2f} s/batch",
        ))
    report["ratios"] = ratios
    return report
