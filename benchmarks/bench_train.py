"""One training step of `full` on cached teacher features against a wide_resnet50_2 training step.

Both steps are forward + backward + Adam on a batch at the same resolution, measured in the same run;
the figure of merit is achieved GFLOP/s (FLOPs from torch.utils.flop_counter), since the two do
different amounts of work. The target ratio is the PDD step exactly as `pdd train` runs it: the
repository's params.yaml train settings (Adam's lr, betas and weight decay, bf16 autocast), the trainable
modules as built and the teacher features in the layout the teachers (and the teacher cache) give them.
The same step with the whole model and every feature converted to channels_last is reported beside it
(for `full` the engine's layout already is that: channels_last taps and trainable weights, bit-identical;
benchmarks/README.md: the accuracy check), and with the features copied to NCHW. Peak RSS of a real
first-epoch step (teachers computed, no cache) is measured in a fresh process. On a GPU (``--device cuda``)
the step is also timed under bf16 autocast, and the peak GPU memory of a step is reported instead of the RSS.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F

from benchmarks.common import (Ratio, Settings, count_flops, median_seconds, minor_page_faults, peak_gpu_memory,
                               run_isolated, settle)
from pdd.config import load_params
from pdd.config.schema import TrainParams
from pdd.devices import set_tf32
from pdd.engine.schedule import build_optimizer
from pdd.models import build_pdd

BATCH = 10  # the authors' batch size
PEAK_RSS_LIMIT_GIB = 8
PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
# "engine": as `pdd train` runs; "channels_last": the whole model and every feature converted (bit-identical to "engine"
# for the VMamba variants, benchmarks/README.md); "contiguous": every feature copied to NCHW (the layout before
# the VMamba taps became the authors' channels_last views; not the authors' numerics).
LAYOUTS = ("engine", "channels_last", "contiguous")


def pdd_step(layout: str, batch: int, size: int, train: TrainParams, device: str = "cpu", bf16: bool | None = None):
    """A `full` model, its cached-feature batch and one optimiser step on it, with the engine's `train`
    settings; `layout` "engine" leaves modules and features as the engine has them, "channels_last"
    converts both, "contiguous" copies the features to NCHW. `bf16` overrides `train.bf16_autocast` (the loss
    under bfloat16 autocast; teacher features stay float32)."""
    torch.manual_seed(0)
    model = build_pdd("full", "code", pretrained=False).train().to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        features = model.teacher_features(images)
    if layout == "channels_last":
        model.to(memory_format=torch.channels_last)
        features = {name: f.contiguous(memory_format=torch.channels_last) for name, f in features.items()}
    elif layout == "contiguous":
        features = {name: f.contiguous() for name, f in features.items()}
    optimizer = build_optimizer(model.student_parameters(), train.lr, tuple(train.betas), train.weight_decay)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                              enabled=train.bf16_autocast if bf16 is None else bf16)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            total = model.loss_from_features(features)["total"]
        total.backward()
        optimizer.step()

    return step


def wrn50_step(batch: int, size: int, device: str = "cpu"):
    torch.manual_seed(0)
    model = timm.create_model("wide_resnet50_2", pretrained=False).train().to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    optimizer = build_optimizer(model.parameters(), 2e-3, (0.5, 0.999))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def measure(step, batch: int, repeats: int) -> dict:
    flops = count_flops(step)  # the first Adam step also allocates its state
    settling_calls = settle(step)
    faults = minor_page_faults()
    seconds, _ = median_seconds(step, repeats, warmup=0)
    return {"seconds_per_step": seconds, "images_per_s": batch / seconds,
            "gflops_per_step": flops / 1e9, "gflops_per_s": flops / seconds / 1e9,
            "settling_calls": 1 + settling_calls,
            "page_faults_per_timed_step": (minor_page_faults() - faults) / max(1, repeats)}


PEAK_RSS_PROBE = """
import torch
from pdd.models import build_pdd
from pdd.engine.schedule import build_optimizer
torch.manual_seed(0)
model = build_pdd("full", "code", pretrained=False).train()
optimizer = build_optimizer(model.student_parameters(), 2e-3, (0.5, 0.999))
for _ in range(2):
    images = torch.randn({batch}, 3, {size}, {size})
    with torch.no_grad():
        features = model.teacher_features(images)
    optimizer.zero_grad(set_to_none=True)
    model.loss_from_features(features)["total"].backward()
    optimizer.step()
"""


def run(settings: Settings) -> dict:
    batch, size, device = settings.small_batch(BATCH), settings.image_size, settings.device
    train = load_params(PARAMS_FILE).train
    report = {"batch": batch, "size": size, "device": device, "bf16_autocast": train.bf16_autocast,
              "wide_resnet50_2": measure(wrn50_step(batch, size, device), batch, settings.repeats)}
    for layout in LAYOUTS:
        report[f"pdd_full_{layout}"] = measure(pdd_step(layout, batch, size, train, device), batch, settings.repeats)
    wrn, pdd = report["wide_resnet50_2"], report["pdd_full_engine"]
    ratios = [
        Ratio(f"train step `full` (cached features) vs WRN50-2 step, GFLOP/s ({size}², batch {batch})",
              pdd["gflops_per_s"] / wrn["gflops_per_s"], ">= 0.7" if settings.on_gpu else ">= 1.0",
              detail=f"engine layout: {pdd['gflops_per_s']:.1f} vs {wrn['gflops_per_s']:.1f} GFLOP/s; "
                     f"{pdd['images_per_s']:.2f} img/s ({pdd['gflops_per_step'] / batch:.0f} GFLOP/img)"),
        Ratio("train step `full`: all channels_last vs the engine's layout",
              pdd["seconds_per_step"] / report["pdd_full_channels_last"]["seconds_per_step"],
              detail="speed-up of converting everything (> 1 means faster); ~1: the engine's layout already is it"),
        Ratio("train step `full`: contiguous features vs the engine's (authors') layout",
              pdd["seconds_per_step"] / report["pdd_full_contiguous"]["seconds_per_step"],
              detail="speed-up of NCHW copies of the VMamba taps (> 1 means faster); not the authors' numerics"),
    ]
    if settings.on_gpu:
        ratios += _gpu_rows(report, batch, size, train, settings)
    else:
        probe = run_isolated(PEAK_RSS_PROBE.format(batch=batch, size=size))
        report["peak_rss_bytes"] = probe["peak_rss_bytes"]
        ratios.append(Ratio(f"peak RSS of training, first epoch ({size}², batch {batch})",
                            probe["peak_rss_bytes"] / 2**30, f"<= {PEAK_RSS_LIMIT_GIB}", unit="GiB",
                            detail="fresh process: teachers + students + Adam"))
    report["ratios"] = ratios
    return report


def _gpu_rows(report: dict, batch: int, size: int, train: TrainParams, settings: Settings) -> list[Ratio]:
    """The `full` step's img/s in float32 and under bf16 autocast (engine layout), and its peak GPU memory."""
    fp32_step = pdd_step("engine", batch, size, train, settings.device, bf16=False)
    report["pdd_full_fp32"] = fp32 = measure(fp32_step, batch, settings.repeats)
    report["pdd_full_bf16"] = bf16 = measure(pdd_step("engine", batch, size, train, settings.device, bf16=True),
                                             batch, settings.repeats)
    set_tf32(not train.tf32)
    try:
        report["pdd_full_fp32_other_tf32"] = other = measure(fp32_step, batch, settings.repeats)
    finally:
        set_tf32(train.tf32)
    tf32, ieee = (other, fp32) if not train.tf32 else (fp32, other)
    report["peak_gpu_memory_bytes"] = peak = peak_gpu_memory(fp32_step)  # Adam's state allocated by measure
    return [
        Ratio(f"train step `full` fp32 ({size}², batch {batch})", fp32["images_per_s"], unit="img/s"),
        Ratio(f"train step `full` bf16 autocast ({size}², batch {batch})", bf16["images_per_s"], unit="img/s"),
        Ratio("train step `full`: bf16 autocast vs fp32", bf16["images_per_s"] / fp32["images_per_s"], ">= 1.5"),
        Ratio("train step `full` fp32: TF32 on vs off (train.tf32)", tf32["images_per_s"] / ieee["images_per_s"],
              detail=f"{tf32['images_per_s']:.1f} vs {ieee['images_per_s']:.1f} img/s; params: tf32 {train.tf32}"),
        Ratio(f"peak GPU memory, `full` train step (batch {batch})", peak / 2**30, unit="GiB",
              detail="cached features: students + adapters + MPA + Adam"),
    ]
