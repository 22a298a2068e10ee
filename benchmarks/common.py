"""What every benchmark shares: medians of repeated timings, FLOP counts, the machine, and ratio rows.

Timings on a shared CPU are noisy, so every benchmark reports *ratios* of two things measured in the
same run (our path against a baseline), each from the median of several timed repetitions.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from pdd.allocator import tune_allocator


@dataclass(frozen=True)
class Settings:
    """How hard to measure: `quick` shrinks inputs and repetitions so the whole suite takes minutes (on a GPU
    it keeps 256² and the full batches, which take seconds there); `device` is where models and data live."""

    quick: bool = False
    repeats: int = 3
    device: str = "cpu"

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def image_size(self) -> int:
        return 128 if self.quick and not self.on_gpu else 256

    def small_batch(self, full: int) -> int:
        """`full` images, or 2 under --quick on the CPU."""
        return 2 if self.quick and not self.on_gpu else full


@dataclass(frozen=True)
class Ratio:
    """One line of the summary table: `value` of `name` (ours / baseline, or a measured quantity) and its target."""

    name: str
    value: float
    target: str = ""  # e.g. ">= 0.5"; empty for figures that are only reported
    unit: str = "x"
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if not self.target:
            return None
        operator, bound = self.target.split()
        return self.value >= float(bound) if operator == ">=" else self.value <= float(bound)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


# A call that faults in less fresh memory than this runs on a settled heap.
SETTLED_FAULT_BYTES = 1 << 20
MAX_SETTLING_CALLS = 8
PAGE_BYTES = resource.getpagesize()


def minor_page_faults() -> int:
    """This process's minor page faults so far: each one is a fresh page the kernel mapped and zeroed."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def settle(fn: Callable[[], Any], max_calls: int = MAX_SETTLING_CALLS) -> int:
    """Call `fn` until one call faults in less than SETTLED_FAULT_BYTES of fresh pages, at most `max_calls`
    times; returns the calls made. glibc's heap grows over a training step's first calls (the `full` step at
    256², batch 10 faults in 162,000, 94,000 and 15,000 pages in its first three, 2.3, 1.4 and 0.2 s of system
    time, and next to none later; WRN50-2's settles one call earlier), so timing from the second call measures
    the kernel's page faults, unequally for the two sides of a ratio, instead of the step a long run repeats."""
    for calls in range(1, max_calls + 1):
        before = minor_page_faults()
        fn()
        if (minor_page_faults() - before) * PAGE_BYTES < SETTLED_FAULT_BYTES:
            return calls
    return max_calls


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of `repeats` calls after `warmup` untimed ones, and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(max(1, repeats)):
        _synchronize()
        start = time.perf_counter()
        result = fn()
        _synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _synchronize() -> None:
    """Wait for queued GPU work, so that a timing covers the kernels a call launched (no-op on the CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def peak_gpu_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes the CUDA caching allocator handed out during one call of `fn`."""
    _synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    _synchronize()
    return torch.cuda.max_memory_allocated()


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call as torch.utils.flop_counter sees them (matmuls and convolutions, forward and backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the CPU was (timings are only comparable within a run)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "malloc_tuning": tune_allocator(),  # what `pdd` set (None: not glibc, or PDD_MALLOC_TUNING=0)
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_isolated(code: str, timeout: float = 1800) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; return the JSON object it prints last, plus its own peak RSS.

    A fresh process is the only honest way to measure a peak resident set: this one has already
    touched memory for other benchmarks. It tunes the allocator first, as the `pdd` command does.
    """
    prologue = "from pdd.allocator import tune_allocator\ntune_allocator()\n"
    epilogue = ("\nimport json as _j, resource as _r\n"
                "print(_j.dumps({'peak_rss_bytes': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss * 1024}))\n")
    completed = subprocess.run([sys.executable, "-c", prologue + code + epilogue], capture_output=True, text=True,
                               timeout=timeout, check=False)
    if completed.returncode:
        raise RuntimeError(f"benchmark subprocess failed:\n{completed.stderr[-4000:]}")
    report: dict[str, Any] = {}
    for line in completed.stdout.splitlines():
        if line.startswith("{"):
            report.update(json.loads(line))
    return report
