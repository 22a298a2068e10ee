"""One training step of `full` on cached teacher features against a wide_resnet50_2 training step.

Both steps are forward + backward + Adam on a batch at the same resolution, measured in the same run;
the figure of merit is achieved GFLOP/s (FLOPs from torch.utils.flop_counter), since the two do
different amounts of work. The target ratio is the PDD step exactly as `pdd train` runs it: the
repository's params.yaml train settings (Adam's lr, betas and weight decay, bf16 autocast), the trainable
modules as built and the teacher features in the layout the teachers (and the teacher cache) give them.
The same step with the trainable modules and every feature in channels_last is reported beside it: the
engine does not train that way (benchmarks/README.md: the accuracy check). Peak RSS of a real
first-epoch step (teachers computed, no cache) is measured in a fresh process.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F

from benchmarks.common import Ratio, Settings, count_flops, median_seconds, run_isolated
from pdd.config import load_params
from pdd.config.schema import TrainParams
from pdd.engine.schedule import build_optimizer
from pdd.models import build_pdd

BATCH = 10  # the authors' batch size
PEAK_RSS_LIMIT_GIB = 8
PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
# "engine": as `pdd train` runs; "channels_last": modules and every feature converted (bit-identical to "engine"
# for the VMamba variants, benchmarks/README.md); "contiguous": every feature copied to NCHW (the layout before
# the VMamba taps became the authors' channels_last views; not the authors' numerics).
LAYOUTS = ("engine", "channels_last", "contiguous")


def pdd_step(layout: str, batch: int, size: int, train: TrainParams):
    """A `full` model, its cached-feature batch and one optimiser step on it, with the engine's `train`
    settings; `layout` "engine" leaves modules and features as the engine has them, "channels_last"
    converts both, "contiguous" copies the features to NCHW."""
    torch.manual_seed(0)
    model = build_pdd("full", "code", pretrained=False).train()
    images = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        features = model.teacher_features(images)
    if layout == "channels_last":
        model.to(memory_format=torch.channels_last)
        features = {name: f.contiguous(memory_format=torch.channels_last) for name, f in features.items()}
    elif layout == "contiguous":
        features = {name: f.contiguous() for name, f in features.items()}
    optimizer = build_optimizer(model.student_parameters(), train.lr, tuple(train.betas), train.weight_decay)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=train.bf16_autocast)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            total = model.loss_from_features(features)["total"]
        total.backward()
        optimizer.step()

    return step


def wrn50_step(batch: int, size: int):
    torch.manual_seed(0)
    model = timm.create_model("wide_resnet50_2", pretrained=False).train()
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))
    optimizer = build_optimizer(model.parameters(), 2e-3, (0.5, 0.999))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def measure(step, batch: int, repeats: int) -> dict:
    flops = count_flops(step)  # also the warm-up: the first Adam step allocates its state
    seconds, _ = median_seconds(step, repeats, warmup=0)
    return {"seconds_per_step": seconds, "images_per_s": batch / seconds,
            "gflops_per_step": flops / 1e9, "gflops_per_s": flops / seconds / 1e9}


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
    batch, size = (2, settings.image_size) if settings.quick else (BATCH, settings.image_size)
    train = load_params(PARAMS_FILE).train
    report = {"batch": batch, "size": size, "bf16_autocast": train.bf16_autocast,
              "wide_resnet50_2": measure(wrn50_step(batch, size), batch, settings.repeats)}
    for layout in LAYOUTS:
        report[f"pdd_full_{layout}"] = measure(pdd_step(layout, batch, size, train), batch, settings.repeats)
    wrn, pdd = report["wide_resnet50_2"], report["pdd_full_engine"]
    probe = run_isolated(PEAK_RSS_PROBE.format(batch=batch, size=size))
    report["peak_rss_bytes"] = probe["peak_rss_bytes"]
    report["ratios"] = [
        Ratio(f"train step `full` (cached features) vs WRN50-2 step, GFLOP/s ({size}², batch {batch})",
              pdd["gflops_per_s"] / wrn["gflops_per_s"], ">= 1.0",
              detail=f"engine layout: {pdd['gflops_per_s']:.1f} vs {wrn['gflops_per_s']:.1f} GFLOP/s; "
                     f"{pdd['images_per_s']:.2f} img/s ({pdd['gflops_per_step'] / batch:.0f} GFLOP/img)"),
        Ratio("train step `full`: all channels_last vs the engine's layout",
              pdd["seconds_per_step"] / report["pdd_full_channels_last"]["seconds_per_step"],
              detail="speed-up of channels_last (> 1 means faster); the engine does not use it"),
        Ratio("train step `full`: contiguous features vs the engine's (authors') layout",
              pdd["seconds_per_step"] / report["pdd_full_contiguous"]["seconds_per_step"],
              detail="speed-up of NCHW copies of the VMamba taps (> 1 means faster); not the authors' numerics"),
        Ratio(f"peak RSS of training, first epoch ({size}², batch {batch})", probe["peak_rss_bytes"] / 2**30,
              f"<= {PEAK_RSS_LIMIT_GIB}", unit="GiB", detail="fresh process: teachers + students + Adam"),
    ]
    return report
