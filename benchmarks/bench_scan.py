"""Selective-scan and teacher-forward throughput on the CPU, measured in one run.

1. Our `selective_scan` (every CPU backend) against a step-by-step Python loop (mamba-ssm's
   reference formulation) at the four VMamba-Tiny stage shapes at 256², checking that the outputs agree.
2. VMamba-Tiny against timm's wide_resnet50_2 (features_only), 256², batch 8, no grad, with FLOPs.

Timings are medians of several runs: the CPU may be shared with other work. Writes a JSON report.

    python benchmarks/bench_scan.py [--repeats 3] [--batch 8] [--out results/benchmarks/scan.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pdd.io import atomic_write_json
from pdd.models.selective_scan import available_backends, selective_scan
from pdd.models.vmamba import vmamba_tiny

# (stage, K*D channels, L) of VMamba-Tiny at 256²: K = 4 directions, D = 2C, L = (256 / 4 / 2^stage)².
STAGES = [(1, 768, 4096), (2, 1536, 1024), (3, 3072, 256), (4, 6144, 64)]
DIRECTIONS, STATES = 4, 16


def step_by_step_scan(u, delta, A, B, C, D, delta_bias):
    """The baseline: one Python iteration per time step, as mamba-ssm's `selective_scan_ref`."""
    batch, channels, length = u.shape
    dt = F.softplus(delta + delta_bias[:, None])
    B = B.repeat_interleave(channels // B.shape[1], dim=1)
    C = C.repeat_interleave(channels // C.shape[1], dim=1)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", dt, A))
    inputs = torch.einsum("bdl,bdnl,bdl->bdln", dt, B, u)
    state = u.new_zeros(batch, channels, A.shape[1])
    ys = []
    for t in range(length):
        state = decay[:, :, t] * state + inputs[:, :, t]
        ys.append(torch.einsum("bdn,bdn->bd", state, C[:, :, :, t]))
    return torch.stack(ys, dim=2) + u * D[:, None]


def median_seconds(fn, repeats: int, warmup: int = 1) -> tuple[float, object]:
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def scan_inputs(channels: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(1, channels, length, generator=gen),
        delta=torch.randn(1, channels, length, generator=gen) - 2.0,  # dt ~ 0.1, as trained VMamba
        A=-torch.exp(torch.rand(channels, STATES, generator=gen) * 2.8),  # -1 .. -16, the S4D range
        B=torch.randn(1, DIRECTIONS, STATES, length, generator=gen),
        C=torch.randn(1, DIRECTIONS, STATES, length, generator=gen),
        D=torch.ones(channels),
        delta_bias=torch.zeros(channels),
    )


def bench_scan(repeats: int) -> list[dict]:
    rows = []
    backends = [b for b in available_backends() if b != "cuda"]
    for stage, channels, length in STAGES:
        inputs = scan_inputs(channels, length)
        with torch.no_grad():
            loop_s, expected = median_seconds(lambda: step_by_step_scan(**inputs), max(1, repeats), warmup=0)
            row = {"stage": stage, "channels": channels, "L": length, "N": STATES, "batch": 1, "loop_s": loop_s}
            for backend in backends:
                seconds, y = median_seconds(
                    lambda: selective_scan(**inputs, delta_softplus=True, backend=backend), repeats
                )
                error = ((y - expected).abs().max() / expected.abs().max()).item()
                row[backend] = {"seconds": seconds, "speedup_vs_loop": loop_s / seconds, "max_rel_error": error}
        rows.append(row)
        print_scan_row(row, backends)
    return rows


def print_scan_row(row: dict, backends: list[str]) -> None:
    cells = [f"stage {row['stage']}  {row['channels']:>5}x{row['L']:<5}", f"loop {row['loop_s'] * 1e3:8.1f} ms"]
    for backend in backends:
        r = row[backend]
        cells.append(f"{backend} {r['seconds'] * 1e3:7.1f} ms = {r['speedup_vs_loop']:5.1f}x (err {r['max_rel_error']:.1e})")
    print(" | ".join(cells), flush=True)


def bench_teachers(batch: int, size: int, repeats: int) -> dict:
    import timm

    images = torch.randn(batch, 3, size, size)
    models = {
        "vmamba_tiny": vmamba_tiny().eval(),
        "wide_resnet50_2": timm.create_model("wide_resnet50_2", pretrained=False, features_only=True).eval(),
    }
    report = {}
    for name, model in models.items():
        with torch.no_grad():
            counter = FlopCounterMode(display=False)
            with counter:
                model(images)
            seconds, _ = median_seconds(lambda: model(images), repeats)
        flops = counter.get_total_flops()
        report[name] = {
            "seconds_per_batch": seconds,
            "images_per_s": batch / seconds,
            "gflops_per_image": flops / batch / 1e9,
            "gflops_per_s": flops / seconds / 1e9,
        }
        print(f"{name:16s} {seconds:6.2f} s/batch  {batch / seconds:6.2f} img/s  "
              f"{flops / batch / 1e9:6.1f} GFLOP/img  {flops / seconds / 1e9:6.1f} GFLOP/s", flush=True)
    report["vmamba_over_wrn_throughput"] = report["vmamba_tiny"]["images_per_s"] / report["wide_resnet50_2"]["images_per_s"]
    print(f"VMamba-Tiny / wide_resnet50_2 throughput: {report['vmamba_over_wrn_throughput']:.2f}x")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--skip-teachers", action="store_true")
    parser.add_argument("--out", default="results/benchmarks/scan.json")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, backends {available_backends()}; "
          f"medians of {args.repeats} runs (the CPU may be shared)")
    report = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "method": f"median of {args.repeats} timed runs after one warm-up; CPU possibly shared with other jobs; "
        "FLOPs from torch.utils.flop_counter (matmuls and convolutions only: the scan itself is not counted)",
        "scan": bench_scan(args.repeats),
    }
    if not args.skip_teachers:
        report["teachers"] = {"batch": args.batch, "size": args.size,
                              **bench_teachers(args.batch, args.size, args.repeats)}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
