"""The device a pdd process computes on: parsed, checked against the GPUs it can see, claimed and made current.

Training, evaluation, prediction and the benchmarks all get their device here, so a wrong index, a missing
GPU or more torchrun ranks than GPUs fail at once with an error that says what to do, never later as CUDA's
"invalid device ordinal". A CUDA device is made the *current* one as well (`torch.cuda.set_device`): kernels
that launch on the current device (Triton, cuBLAS handles, `pin_memory`) then run beside the tensors.

**One GPU per job.** Under `snakemake --resources gpu=N` on a workstation with several GPUs, jobs are plain
processes that see every GPU. `claim_device("auto")` gives each its own: when `CUDA_VISIBLE_DEVICES` is unset
and the process is not one rank of several, it takes a lock file per GPU (`filelock`, in
`$PDD_GPU_LOCK_DIR`, default `~/.cache/pdd/gpu-locks/<host>`) and computes on the first GPU whose lock is
free. The operating system releases a lock when its process ends, a crash or `kill -9` included. When every
GPU is held, the job shares the least-shared one (with a warning) rather than wait. `CUDA_VISIBLE_DEVICES`
(SLURM sets it for a job's GPUs), an explicit `cuda:N` and torchrun's `LOCAL_RANK` are obeyed as given.
The locks coordinate the jobs of one user on one machine (set `PDD_GPU_LOCK_DIR` to a folder every user
can write to coordinate several users).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import torch

from pdd.errors import PDDError

log = logging.getLogger(__name__)

VISIBLE = "CUDA_VISIBLE_DEVICES"
LOCK_DIR_VARIABLE = "PDD_GPU_LOCK_DIR"


def gpu_count() -> int:
    """The GPUs this process can see (after `CUDA_VISIBLE_DEVICES`); 0 without CUDA."""
    return torch.cuda.device_count()


def visible_setting() -> str:
    value = os.environ.get(VISIBLE)
    return f"{VISIBLE} unset" if value is None else f"{VISIBLE}={value!r}"


def cuda_device(index: int) -> torch.device:
    """The torch device of visible GPU `index` (tests with mocked GPU counts compute on the CPU instead)."""
    return torch.device("cuda", index)


def parse_device(name: str | torch.device | None) -> torch.device:
    """`auto` (or None): `cuda` when a GPU is visible, else `cpu`; `cpu`; `cuda`; `cuda:N`, N checked against the
    visible GPUs. A bare `cuda` keeps no index (the caller picks one)."""
    if name is None or name == "auto":
        return torch.device("cuda" if gpu_count() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise PDDError(f"device {name!r} is not one pdd knows; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise PDDError(f"device {name!r}: pdd computes on cpu or cuda; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = gpu_count()
        if count == 0:
            fix = ("check the driver with `nvidia-smi`" if torch.version.cuda else
                   f"torch {torch.__version__} is a CPU-only build: install a CUDA build of torch")
            raise PDDError(f"device {name!r}: no CUDA GPU is visible to this process ({visible_setting()}); use "
                           f"--device cpu, or {fix}")
        if device.index is not None and device.index >= count:
            raise PDDError(f"device {name!r}: this process sees {count} GPU(s), numbered 0 to {count - 1} "
                           f"({visible_setting()}; indices count the visible GPUs only); choose one of them, or "
                           f"change {VISIBLE}")
    return device


def activate(device: torch.device) -> torch.device:
    """Make a CUDA `device` the current one (what kernels launched without a device guard use)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def select_device(name: str | torch.device | None = "auto") -> torch.device:
    """Parse and check `name`, make it current and return it with an index (`cuda` means the current GPU)."""
    device = parse_device(name)
    if device.type == "cuda" and device.index is None:
        device = cuda_device(torch.cuda.current_device())
    return activate(device)


def launch_device(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """A guard that makes `tensor`'s GPU current while a kernel is launched for it (no-op on the CPU)."""
    return torch.cuda.device(tensor.device) if tensor.device.type == "cuda" else contextlib.nullcontext()


@dataclass(frozen=True)
class Assignment:
    """The device one process computes on, and why that one (recorded in run.json and metrics.json)."""

    device: torch.device
    gpu: int | None  # index among the visible GPUs; None on the CPU
    assigned_by: str  # "cpu" | "--device" | "CUDA_VISIBLE_DEVICES" | "torchrun LOCAL_RANK" | "lock" | "lock, shared"
    lock: str | None = None

    def record(self) -> dict[str, Any]:
        return {"device": str(self.device), "gpu": self.gpu, "assigned_by": self.assigned_by, "lock": self.lock,
                VISIBLE: os.environ.get(VISIBLE), "visible_gpus": gpu_count()}


def lock_directory() -> Path:
    configured = os.environ.get(LOCK_DIR_VARIABLE)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "pdd" / "gpu-locks" / socket.gethostname()


@contextlib.contextmanager
def claim_device(preference: str | torch.device | None = "auto", *, local_rank: int = 0,
                 world_size: int = 1) -> Iterator[Assignment]:
    """The device this process computes on, current and (when picked by lock) held until the block ends.

    `preference` is `auto`, `cpu`, `cuda` or `cuda:N`; `local_rank`/`world_size` are torchrun's (one process
    per GPU: rank r computes on visible GPU r)."""
    device = parse_device(preference)
    explicit = device.index is not None
    if device.type == "cpu":
        yield Assignment(device, None, "cpu")
        return
    count = gpu_count()
    if world_size > 1:
        if local_rank >= count:
            ranks = os.environ.get("LOCAL_WORLD_SIZE", str(world_size))
            raise PDDError(
                f"torchrun started {ranks} processes on this machine, but only {count} GPU(s) are visible "
                f"({visible_setting()}); each process needs a GPU of its own (NCCL refuses to share one): run "
                f"`torchrun --nproc_per_node={count} ...` (train.batch_size is per process), or make more GPUs "
                "visible")
        if explicit and device.index != local_rank:
            raise PDDError(f"--device {device} under torchrun: each rank computes on the GPU of its LOCAL_RANK; "
                           "pass --device auto or cuda")
        yield Assignment(activate(cuda_device(local_rank)), local_rank, "torchrun LOCAL_RANK")
        return
    if explicit:
        yield Assignment(activate(cuda_device(device.index)), device.index, "--device")
        return
    if VISIBLE in os.environ:  # chosen for this process already (by SLURM, a launcher, the user)
        yield Assignment(activate(cuda_device(0)), 0, VISIBLE)
        return
    with _gpu_lock(count) as (index, lock, shared):
        yield Assignment(activate(cuda_device(index)), index, "lock, shared" if shared else "lock", str(lock))


@contextlib.contextmanager
def _gpu_lock(count: int) -> Iterator[tuple[int, Path, bool]]:
    """Hold the lock of the first free GPU; when all are held, a second lock of the first GPU held once, and so
    on (slot s of GPU i is `gpu<i>.lock` for s = 0, `gpu<i>.<s>.lock` after), so jobs spread evenly."""
    directory = lock_directory()
    directory.mkdir(parents=True, exist_ok=True)
    for slot in itertools.count():
        for index in range(count):
            path = directory / (f"gpu{index}.lock" if slot == 0 else f"gpu{index}.{slot}.lock")
            lock = filelock.FileLock(path, timeout=0)
            try:
                lock.acquire()
            except filelock.Timeout:
                continue
            try:
                if slot:
                    log.warning("all %d GPUs are held by other pdd processes (locks in %s); sharing GPU %d with "
                                "%d of them. Set %s to choose a GPU yourself", count, directory, index, slot,
                                VISIBLE)
                else:
                    log.info("computing on GPU %d of %d, the first one no other pdd process holds (lock %s)",
                             index, count, path)
                yield index, path, slot > 0
            finally:
                lock.release()
            return


def set_tf32(enabled: bool) -> dict[str, Any]:
    """Let float32 matrix products and cuDNN convolutions on CUDA use TF32 tensor cores (10-bit mantissa products)
    or not, explicitly rather than by PyTorch's defaults; returns the setting as torch reports it, for provenance.

    CUDA only: the CPU's numerics never change here. Torch >= 2.9 has `fp32_precision` and refuses a mix with
    the older `allow_tf32` flags, so the newer interface is used where it exists."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):
        value = "tf32" if enabled else "ieee"
        matmul.fp32_precision = cudnn.conv.fp32_precision = value
        applied = {"matmul": matmul.fp32_precision, "convolution": cudnn.conv.fp32_precision}
    else:
        matmul.allow_tf32 = cudnn.allow_tf32 = enabled
        applied = {name: "tf32" if flag else "ieee" for name, flag in
                   (("matmul", matmul.allow_tf32), ("convolution", cudnn.allow_tf32))}
    return {"tf32": enabled, **applied}
