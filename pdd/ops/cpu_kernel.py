"""The compiled CPU kernels: build each C source of pdd.ops once per source, flags and CPU, load it with ctypes.

Two libraries: ``selective_scan.c`` (the scans of the teacher) and ``global_cosine.c`` (the elementwise
passes of the losses' global cosine, built without floating-point contraction so that it stays
bit-identical to PyTorch). Each shared library is cached on disk (``~/.cache/pdd/kernels``, or
``PDD_KERNEL_DIR``) under a name keyed by the source's sha256, the compiler flags and the CPU. The compile
runs under a file lock next to it, so that processes starting together on a cold cache (DDP ranks,
parallel workflow jobs) compile once: the first builds, the others wait on the lock and load its result.
The library is written atomically, so a reader never sees half of one. Without a working compiler (or with
``PDD_SCAN_KERNEL=0`` / ``PDD_COSINE_KERNEL=0``) the loaders give None and the PyTorch paths are used.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import torch
from filelock import FileLock

from pdd.io import atomic_path

log = logging.getLogger(__name__)

SOURCE = "selective_scan.c"  # package data of pdd.ops
COSINE_SOURCE = "global_cosine.c"
MAX_STATE = 256  # the C loops keep the states in fixed arrays of this size
LANES = 16  # channels per vector of the channels-last cross scan (LANES in selective_scan.c)
TILE = 32  # pixels per work unit of channels_last_to_rows (TILE in global_cosine.c)
ROUTES = 4  # VMamba's cross scan: row-major, column-major, and both reversed
# No -ffast-math: it would let gcc drop exp_f32's rounding trick, and gcc 12 links it with code that
# sets flush-to-zero for the whole process. -fopenmp-simd only honours the `omp simd` pragma.
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-shared", "-fPIC"]
# torch rounds after every multiply and add: a fused multiply-add would not (global_cosine.c)
COSINE_FLAGS = [*FLAGS, "-ffp-contract=off"]
_COMPILE_TIMEOUT_S = 120
# A waiting process gives up (and uses the PyTorch scan) only if the build holding the lock is stuck.
_LOCK_TIMEOUT_S = 2 * _COMPILE_TIMEOUT_S
_P, _I = ctypes.c_void_p, ctypes.c_int64


def cache_dir() -> Path:
    return Path(os.environ.get("PDD_KERNEL_DIR", Path.home() / ".cache" / "pdd" / "kernels"))


def kernel_source(name: str = SOURCE) -> str:
    return resources.files(__package__).joinpath(name).read_text()


@functools.cache
def load_kernel() -> ctypes.CDLL | None:
    """The compiled scans, built on first use (once across processes); None when no compiler works."""
    return _load_library(SOURCE, FLAGS, "PDD_SCAN_KERNEL", {
        "selective_scan_rows": [_P] * 6 + [_I] * 6,
        "cross_scan_channels_last": [_P] * 3 + [_I] + [_P] * 5 + [_I] * 10,
    })


@functools.cache
def load_cosine_kernel() -> ctypes.CDLL | None:
    """The compiled passes of the global cosine, like `load_kernel`."""
    return _load_library(COSINE_SOURCE, COSINE_FLAGS, "PDD_COSINE_KERNEL", {
        "global_cosine_product": [_P] * 5 + [_I] * 3,
        "global_cosine_norm_terms": [_P] * 7 + [_I] * 3,
        "global_cosine_input_grads": [_P] * 11 + [_I] * 3,
        "channels_last_to_rows": [_P] * 2 + [_I] * 4,
    })


def _load_library(name: str, flags: list[str], switch: str, signatures: dict[str, list]) -> ctypes.CDLL | None:
    """Build (under the lock, if no process has yet) and load the C source `name`, and declare its
    functions' argument types; None when `switch` is "0" or no compiler works."""
    if os.environ.get(switch, "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        log.info("%s: no C compiler found; using the PyTorch path", name)
        return None
    source = kernel_source(name)
    source_sha256 = hashlib.sha256(source.encode()).hexdigest()
    key = hashlib.sha256("\n".join([source_sha256, *flags, platform.machine(), _cpu_flags()]).encode())
    path = cache_dir() / f"{Path(name).stem}_{key.hexdigest()[:16]}.so"
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(path.with_suffix(".lock"), timeout=_LOCK_TIMEOUT_S):
                if not path.exists():  # another process may have built it while this one waited
                    _compile(compiler, source, flags, path)
        library = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:  # filelock.Timeout is an OSError
        log.warning("%s: could not build the C kernel (%s); using the PyTorch path", name, exc)
        return None
    for function, argtypes in signatures.items():
        getattr(library, function).argtypes = argtypes
        getattr(library, function).restype = None
    return library


def _compile(compiler: str, source: str, flags: list[str], path: Path) -> None:
    log.info("compiling a C kernel into %s", path)
    with atomic_path(path) as tmp:
        subprocess.run([compiler, *flags, "-x", "c", "-", "-o", str(tmp)],
                       input=source.encode(), check=True, capture_output=True, timeout=_COMPILE_TIMEOUT_S)


def _cpu_flags() -> str:
    """The CPU's feature flags: a kernel built with -march=native must not be reused on another CPU."""
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.processor()


def scan_forward(u, dt, A, B, C) -> torch.Tensor:
    """The core of `reference.DiagonalScan.forward` in C: u, dt (batch, channels, L); B, C (batch, G, N, L)."""
    batch, channels, length = u.shape
    check_state_size(A.shape[1])
    u, dt, A = u.contiguous(), dt.contiguous(), A.contiguous()
    B, C = B.transpose(-1, -2).contiguous(), C.transpose(-1, -2).contiguous()
    y = torch.empty_like(u)
    _run_rows(load_kernel().selective_scan_rows, batch * channels, u, dt, A, B, C, y,
              channels, B.shape[1], length, A.shape[1])
    return y


def check_state_size(n_state: int) -> None:
    if n_state > MAX_STATE:
        raise ValueError(f"the C kernel supports N <= {MAX_STATE}; use backend='torch'")


def cross_scan_forward(u, delta, delta_bias, delta_softplus: bool, A, B, C, D, height: int, width: int) -> torch.Tensor:
    """`dispatch.cross_scan_2d` in one C pass over the pixels (no gradient), in the channels-last layout of
    the VMamba block; shapes as there. u, delta and the output are read and written where they lie; B and C
    may be strided views (of the `x_proj` output) as long as their states are contiguous. The bias and
    softplus of the steps are applied in the kernel, as each step is read."""
    batch, length, channels = u.shape
    n_state = A.shape[1]
    u, delta, D = u.contiguous(), delta.contiguous(), D.contiguous()
    delta_bias = torch.zeros_like(D) if delta_bias is None else delta_bias.contiguous()
    A_t = A.view(ROUTES, channels, n_state).transpose(1, 2).contiguous()  # (4, N, channels): a vector per state
    if B.stride() != C.stride() or B.stride(-1) != 1:  # the kernel walks both with one set of strides
        B, C = B.contiguous(), C.contiguous()
    y = torch.empty_like(u)
    blocks = batch * -(-channels // LANES)
    _run_rows(load_kernel().cross_scan_channels_last, blocks, u, delta, delta_bias, int(delta_softplus), A_t, B, C,
              D, y, batch, channels, height, width, n_state, B.stride(0), B.stride(1), B.stride(2))
    return y


def global_cosine_product(x1, x2, n1, n2) -> torch.Tensor:
    """(x1 / n1) * (x2 / n2) for contiguous float32 (rows, cols) x1, x2 and (rows, 1) clamped norms."""
    product = torch.empty_like(x1)
    _run_rows(load_cosine_kernel().global_cosine_product, x1.numel(), x1, x2, n1, n2, product, _row_length(x1))
    return product


def global_cosine_norm_terms(x1, x2, n1, n2, grad, need_x1: bool, need_x2: bool):
    """-(g * b) * (a / n1) and -(g * a) * (b / n2), a = x1 / n1, b = x2 / n2 (None where not needed)."""
    t1 = torch.empty_like(x1) if need_x1 else None
    t2 = torch.empty_like(x2) if need_x2 else None
    _run_rows(load_cosine_kernel().global_cosine_norm_terms, x1.numel(), x1, x2, n1, n2, grad, t1, t2,
              _row_length(x1))
    return t1, t2


def global_cosine_input_grads(x1, x2, n1, n2, raw1, raw2, grad, sum1, sum2, out1, out2) -> None:
    """(g * b) / n1 + sum1 * (x1 / raw1), and alike for x2, into out1 / out2 (either may be None, and may
    be the buffers of `global_cosine_norm_terms`)."""
    _run_rows(load_cosine_kernel().global_cosine_input_grads, x1.numel(), x1, x2, n1, n2, raw1, raw2, grad,
              sum1, sum2, out1, out2, _row_length(x1))


def channels_last_rows(x: torch.Tensor) -> torch.Tensor:
    """x.flatten(1) of a channels-last float32 (B, C, H, W) map: the same copy in cache-sized tiles."""
    batch, channels, height, width = x.shape
    rows = torch.empty(batch, channels * height * width, dtype=x.dtype)
    pixels = height * width
    _run_rows(load_cosine_kernel().channels_last_to_rows, batch * -(-pixels // TILE), x, rows, channels, pixels)
    return rows


def _row_length(x: torch.Tensor) -> int:
    """The elements of one sample (a row of the global cosine's passes)."""
    return x.numel() // x.shape[0]


def _run_rows(function, rows: int, *arguments) -> None:
    """Call `function(*pointers, *integers, row_begin, row_end)` on ranges of rows (or channel blocks, or
    elements) split evenly over torch's threads: ctypes releases the GIL, so the threads run truly in parallel."""
    values = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in arguments]
    workers = max(1, min(torch.get_num_threads(), rows))
    bounds = [rows * i // workers for i in range(workers + 1)]

    def run(i: int) -> None:
        function(*values, bounds[i], bounds[i + 1])

    if workers == 1:
        run(0)
    else:
        list(_thread_pool(workers).map(run, range(workers)))


@functools.cache
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pdd-scan")
