"""Keep freed tensor memory in the process instead of handing it back to the kernel after every step.

glibc serves every allocation above its mmap threshold (at most 32 MiB by default, 128 KiB once a program
sets any threshold) with a fresh `mmap` and returns it with `munmap` when freed; it also trims the heap's
free top back to the kernel. A training step allocates and frees the same few hundred tensors every
iteration, many of them tens of MiB at 256² (a 10 × 256 × 64² float32 map is 42 MiB), so each step paid
its activations again as page faults: 430,000 minor faults and 1.4 s of system time in a 4.8 s `full` step
on the 2-core development machine (benchmarks/README.md). With the settings below the same step takes no
faults once the heap has settled (a few steps) and runs 1.2-1.4x faster (benchmarks/README.md); numerics are untouched (only where memory comes from).

This is the glibc counterpart of what PyTorch's CPU tuning guides do with jemalloc or tcmalloc via
LD_PRELOAD, done in-process with `mallopt` so that `pdd` needs nothing installed or preloaded. It must run
before the process starts threads (arenas are per thread), so `pdd.cli.main` calls it first.
The cost: memory freed inside a run stays mapped until the process ends (peak RSS is what the run needs at
its largest step anyway). `PDD_MALLOC_TUNING=0` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# mmap only above 1 GiB (no activation is that large); never trim below 2 GiB - 1 (mallopt takes an int);
# one arena: torch's worker threads allocate little, and a second arena would mmap its own 64 MiB heaps.
SETTINGS = {"M_MMAP_THRESHOLD": (M_MMAP_THRESHOLD, 1 << 30),
            "M_TRIM_THRESHOLD": (M_TRIM_THRESHOLD, (1 << 31) - 1),
            "M_ARENA_MAX": (M_ARENA_MAX, 1)}
DISABLE_VARIABLE = "PDD_MALLOC_TUNING"

_applied: dict[str, int] | None = None


def tune_allocator() -> dict[str, int] | None:
    """Apply SETTINGS with glibc's `mallopt` once per process; returns what was set, None where it does not
    apply (not glibc, or `PDD_MALLOC_TUNING=0`). Idempotent, and never fails a command: a refused setting is
    left out of the result."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(DISABLE_VARIABLE, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = {name: value for name, (param, value) in SETTINGS.items() if mallopt(param, value) == 1}
    return _applied
