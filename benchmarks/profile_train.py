"""Where the `full` training step (cached features, Adam) spends its time: per phase and per op.

    python -m benchmarks.profile_train [--size 256] [--batch 10] [--steps 2]

Phases are timed around the step's parts (forward of the adapters, MPA, students and loss; backward; Adam),
medians over `--steps` steps once the heap has settled (`benchmarks.common.settle`); ops come from
torch.profiler over the same steps (self CPU time, the 15 largest). torch.profiler's overhead inflates some
ops (it counted the fused cosine's ctypes passes 5x too long), so one more step is timed op by op with
perf_counter in a dispatch mode: wall time per op and per op and memory layouts (C = NCHW, L = channels_last,
of the tensor arguments > the result), and what ran outside torch ops (the C passes of the loss, Python).
The step is the engine's: `benchmarks.bench_train.pdd_step`'s "engine" layout.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.bench_train import PARAMS_FILE
from benchmarks.common import settle
from pdd.config import load_params
from pdd.engine.schedule import build_optimizer
from pdd.models import build_pdd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    train = load_params(PARAMS_FILE).train
    torch.manual_seed(0)
    model = build_pdd("full", "code", pretrained=False).train()
    with torch.no_grad():
        features = model.teacher_features(torch.randn(args.batch, 3, args.size, args.size))
    optimizer = build_optimizer(model.student_parameters(), train.lr, tuple(train.betas), train.weight_decay)
    phases: dict[str, list[float]] = {}

    def timed(name, fn, *fn_args):
        start = time.perf_counter()
        result = fn(*fn_args)
        phases.setdefault(name, []).append(time.perf_counter() - start)
        return result

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        targets, code = timed("adapters (neck)", model.neck, features)
        priors = timed("MPA", model.mpa, code)
        students = {path: timed(f"student {path}", model.student(path), code, priors if path == "prior" else None)
                    for path in model.variant.student_paths}
        total = timed("loss", model.criterion, students, targets)["total"]
        timed("backward", total.backward)
        timed("Adam", optimizer.step)

    settle(step)
    with OpTimer() as timer:  # before the profiler, which leaves the next step slower
        start = time.perf_counter()
        step()
        op_by_op = time.perf_counter() - start
    phases.clear()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.steps):
            step()
    medians = {name: statistics.median(times) for name, times in phases.items()}
    whole = sum(medians.values())
    print(f"`full` step, {args.size}², batch {args.batch}, {torch.get_num_threads()} threads, "
          f"load {os.getloadavg()}: {whole:.2f} s per step")
    for name, seconds in medians.items():
        print(f"  {name:<18} {seconds:7.3f} s  {100 * seconds / whole:5.1f} %")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    timer.report(op_by_op)


def _layout(x) -> str:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        return ""
    if x.is_contiguous():
        return "C"
    return "L" if x.is_contiguous(memory_format=torch.channels_last) else "S"


class OpTimer(TorchDispatchMode):
    """Wall time of every aten op run under it, by op and by (op, first shape, layouts)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[tuple[str, str, str], float] = collections.defaultdict(float)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        result = func(*args, **(kwargs or {}))
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        layouts = "".join(_layout(t) for t in tensors) + ">" + _layout(result)
        shape = str(tuple(tensors[0].shape)) if tensors else ""
        self.seconds[(func.overloadpacket.__name__, shape, layouts)] += time.perf_counter() - start
        return result

    def report(self, whole: float, rows: int = 15) -> None:
        by_op: dict[str, float] = collections.defaultdict(float)
        for (name, _, _), seconds in self.seconds.items():
            by_op[name] += seconds
        in_ops = sum(by_op.values())
        print(f"one step timed op by op: {whole:.2f} s; outside torch ops (C passes of the loss, Python) "
              f"{whole - in_ops:.3f} s ({100 * (whole - in_ops) / whole:.1f} %)")
        for name, seconds in sorted(by_op.items(), key=lambda item: -item[1])[:rows]:
            print(f"  {name:<32} {seconds:7.3f} s  {100 * seconds / whole:5.1f} %")
        print("by op, first tensor's shape, layouts of the tensor arguments > the result:")
        for (name, shape, layouts), seconds in sorted(self.seconds.items(), key=lambda item: -item[1])[:rows]:
            print(f"  {name:<32} {shape:<22} {layouts:<8} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
