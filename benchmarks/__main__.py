"""Run every CPU benchmark of pdd in one process and print one table of ratios measured in this run.

    python -m benchmarks [--quick] [--only scan,forward,train,epoch,cache,inference,predict,pipeline,report] [--demo]
    python -m benchmarks --device cuda[:N] [--quick] [--only forward,train,epoch,cache]   (benchmarks/device_check.sh)

Writes results/benchmarks/<name>.json per benchmark and results/benchmarks/summary.json (machine,
settings and every ratio). Times are medians of --repeats runs; the CPU may be shared, so compare
ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import importlib
import time
from datetime import datetime, timezone
from pathlib import Path


from benchmarks.common import Ratio, Settings, machine
from pdd.config import load_params
from pdd.devices import select_device, set_tf32
from pdd.errors import PDDError
from pdd.io import atomic_write_json

BENCHMARKS = ("scan", "forward", "train", "epoch", "cache", "inference", "predict", "pipeline", "report")
GPU_BENCHMARKS = ("forward", "train", "epoch", "cache")  # the others time CPU-only paths (C kernel, CLI runs)
PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128² inputs, batch 2, fewer scan stages (minutes)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the median is reported")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)} "
                                        f"(with --device cuda: of {','.join(GPU_BENCHMARKS)}); default: all")
    parser.add_argument("--device", default="cpu", help="where models and data live: cpu, cuda or cuda:N")
    parser.add_argument("--demo", action="store_true", help="also time the snakemake demo end to end (minutes)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()
    try:
        args.device = str(select_device(args.device))  # checked against the visible GPUs, made current
    except PDDError as exc:
        parser.error(str(exc))
    allowed = GPU_BENCHMARKS if args.device.startswith("cuda") else BENCHMARKS
    args.only = [name.strip() for name in (args.only or ",".join(allowed)).split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(allowed))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown} for --device {args.device}; choose from {list(allowed)}")
    return args


def format_table(ratios: list[Ratio]) -> str:
    width = max(len(r.name) for r in ratios)
    lines = [f"{'measure':<{width}}  {'value':>10}  {'target':>8}  ok   detail", "-" * (width + 40)]
    for r in ratios:
        ok = {True: "yes", False: "NO", None: ""}[r.met]
        lines.append(f"{r.name:<{width}}  {r.value:>8.2f} {r.unit:<3} {r.target:>7}  {ok:<4} {r.detail}")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    settings = Settings(quick=args.quick, repeats=args.repeats, device=args.device)
    numerics = set_tf32(load_params(PARAMS_FILE).train.tf32)  # as `pdd train` runs, explicitly
    summary = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
               "settings": {"quick": args.quick, "repeats": args.repeats, "image_size": settings.image_size,
                            "device": args.device, "numerics": numerics},
               "method": "medians of --repeats timed runs after a warm-up; ratios compare two measurements of this "
                         "run; FLOPs from torch.utils.flop_counter (matmuls and convolutions; the scan is not counted)",
               "ratios": []}
    on = f"{summary['machine']['gpu']} (CUDA {summary['machine']['cuda']}), host " if settings.on_gpu else ""
    print(f"pdd benchmarks on {on}{summary['machine']['cpu']} ({summary['machine']['cores']} cores, torch "
          f"{summary['machine']['torch']}, {summary['machine']['torch_threads']} threads, load "
          f"{summary['machine']['load_average']}); medians of {args.repeats}", flush=True)
    ratios: list[Ratio] = []
    for name in args.only:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = time.perf_counter()
        report = module.run(settings, demo=args.demo) if name == "pipeline" else module.run(settings)
        report["wall_s"] = time.perf_counter() - started
        report["ratios"] = [r.as_dict() for r in report["ratios"]]
        ratios += [Ratio(**{k: v for k, v in r.items() if k != "met"}) for r in report["ratios"]]
        atomic_write_json(args.out / f"{name}.json", {"created": summary["created"], "machine": summary["machine"],
                                                      "settings": summary["settings"], **report})
        print(f"[{name}: {report['wall_s']:.0f} s]\n{format_table(ratios[-len(report['ratios']):])}", flush=True)
    summary["machine"]["load_average_end"] = machine()["load_average"]
    summary["ratios"] = [r.as_dict() for r in ratios]
    atomic_write_json(args.out / "summary.json", summary)
    print("\n" + format_table(ratios))
    print(f"load average (1, 5, 15 min) at the start {summary['machine']['load_average']}, at the end "
          f"{summary['machine']['load_average_end']}: rerun when the start is above 1.5")
    print(f"wrote {args.out}/summary.json")


if __name__ == "__main__":
    main()
