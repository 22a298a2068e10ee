"""Teacher forward throughput: VMamba-Tiny against timm's wide_resnet50_2 (features_only), no grad,
at batch 2 and 8 (batch 2 only with --quick).

FLOPs come from torch.utils.flop_counter (matmuls and convolutions; the selective scan itself is not
counted, so VMamba's GFLOP/s understates its work). On the CPU the fused cross scan is also compared with the
route-by-route scans it replaced (same kernel per route, routes materialised and flipped in memory); on a GPU
(``--device cuda``) VMamba-Tiny is timed with each GPU scan backend, at 256² and batch 32.
"""

from __future__ import annotations

import contextlib
import functools

import timm
import torch

from benchmarks.common import Ratio, Settings, count_flops, median_seconds, peak_gpu_memory, settle
from pdd.models import vmamba as vmamba_module
from pdd.ops import available_backends, cross_scan_2d
from pdd.models.vmamba import vmamba_tiny


def measure(model: torch.nn.Module, images: torch.Tensor, repeats: int) -> dict:
    with torch.inference_mode():
        flops = count_flops(lambda: model(images))
        settle(lambda: model(images))
        seconds, _ = median_seconds(lambda: model(images), repeats, warmup=0)
    batch = images.shape[0]
    return {"seconds_per_batch": seconds, "images_per_s": batch / seconds,
            "gflops_per_image": flops / batch / 1e9, "gflops_per_s": flops / seconds / 1e9}


GPU_BATCH = 32  # the target's batch on a GPU


@contextlib.contextmanager
def scan_backend(backend: str):
    """VMamba's cross scans forced to `backend` for the duration (the model calls `cross_scan_2d` by name)."""
    original = vmamba_module.cross_scan_2d
    vmamba_module.cross_scan_2d = functools.partial(cross_scan_2d, backend=backend)
    try:
        yield
    finally:
        vmamba_module.cross_scan_2d = original


def run(settings: Settings) -> dict:
    batches = (GPU_BATCH,) if settings.on_gpu else (2,) if settings.quick else (2, 8)
    torch.manual_seed(0)
    vmamba = vmamba_tiny().eval().to(settings.device)
    wrn50 = timm.create_model("wide_resnet50_2", pretrained=False, features_only=True).eval().to(settings.device)
    report, ratios = {"size": settings.image_size, "batches": list(batches), "device": settings.device}, []
    for batch in batches:
        images = torch.randn(batch, 3, settings.image_size, settings.image_size, device=settings.device)
        vm = report[f"vmamba_tiny_batch{batch}"] = measure(vmamba, images, settings.repeats)
        wrn = report[f"wide_resnet50_2_batch{batch}"] = measure(wrn50, images, settings.repeats)
        ratios.append(Ratio(
            f"VMamba-Tiny vs WRN50-2 forward throughput ({settings.image_size}², batch {batch})",
            vm["images_per_s"] / wrn["images_per_s"], ">= 0.5" if settings.on_gpu else ">= 0.6",
            detail=f"{vm['images_per_s']:.2f} vs {wrn['images_per_s']:.2f} img/s; "
                   f"{vm['gflops_per_s']:.1f} vs {wrn['gflops_per_s']:.1f} GFLOP/s counted",
        ))
    if settings.on_gpu:
        ratios += _gpu_rows(report, vmamba, wrn50, images, settings)
    elif "kernel" in available_backends("cpu"):
        # The same model with the routes materialised and scanned one by one (channel-first, flipped and
        # transposed in memory), at the largest batch.
        with scan_backend("kernel"):
            unfused = report["vmamba_tiny_route_by_route"] = measure(vmamba, images, settings.repeats)
        ratios.append(Ratio(
            f"VMamba-Tiny fused channels-last cross scan vs route-by-route scans (batch {batch})",
            vm["images_per_s"] / unfused["images_per_s"], ">= 1",
            detail=f"{vm['seconds_per_batch']:.2f} vs {unfused['seconds_per_batch']:.2f} s/batch",
        ))
    report["ratios"] = ratios
    return report


def _gpu_rows(report: dict, vmamba, wrn50, images: torch.Tensor, settings: Settings) -> list[Ratio]:
    """Forward img/s of VMamba-Tiny per GPU scan backend, WRN50-2's, and the peak GPU memory of each model."""
    wrn = report[f"wide_resnet50_2_batch{images.shape[0]}"]
    rows = [Ratio(f"WRN50-2 forward ({settings.image_size}², batch {images.shape[0]})", wrn["images_per_s"],
                  unit="img/s")]
    for backend in available_backends(settings.device):
        with scan_backend(backend):
            report[f"vmamba_tiny_{backend}"] = measured = measure(vmamba, images, settings.repeats)
        rows.append(Ratio(f"VMamba-Tiny forward, scan backend {backend}", measured["images_per_s"], unit="img/s",
                          detail=f"{measured['seconds_per_batch'] * 1e3:.1f} ms/batch"))
    if "vmamba_tiny_triton" in report:
        rows.append(Ratio("VMamba-Tiny (Triton scan) vs WRN50-2 forward throughput",
                          report["vmamba_tiny_triton"]["images_per_s"] / wrn["images_per_s"],
                          ">= 0.5"))
    for name, model in (("VMamba-Tiny", vmamba), ("WRN50-2", wrn50)):
        with torch.inference_mode():
            peak = peak_gpu_memory(lambda: model(images))
        rows.append(Ratio(f"peak GPU memory, {name} forward (batch {images.shape[0]})", peak / 2**30, unit="GiB"))
    return rows
