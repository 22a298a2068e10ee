"""Data-parallel training under `torchrun` (one process per GPU, or gloo processes on a CPU).

Without torchrun's environment everything here degrades to a single process, so the training
loop has one code path. Rank 0 alone writes checkpoints, snapshots and logs; the others wait for it.
Which GPU each process computes on is `pdd.devices.claim_device`'s (one per rank, `LOCAL_RANK`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pdd.errors import PDDError

# rank 0 writes checkpoints and snapshots while the other ranks wait in a barrier: allow for a slow disk
_PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """True only if `flag` is true on every rank (so all ranks stop together on a bad loss)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average of `values` over ranks (for logging losses that every rank computed on its shard)."""
        if not self.enabled:
            return values
        values = values.detach().clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world_size

    def check_replicas(self, parameters: list[torch.Tensor], epoch: int) -> None:
        """Fail loudly if the ranks' model replicas have drifted apart (they must stay bitwise equal)."""
        if not self.enabled:
            return
        checksum = torch.stack([p.detach().double().sum() for p in parameters]).sum().reshape(1).to(self.device)
        low, high = checksum.clone(), checksum.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if low.item() != high.item():
            raise PDDError(
                f"after epoch {epoch} the model replicas of the {self.world_size} processes differ "
                f"(parameter checksums {low.item()!r} to {high.item()!r}); gradients were not synchronised, "
                "so this run is invalid: report it with the torch version and launcher command"
            )

    def broadcast_object(self, obj: object) -> object:
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def launch() -> tuple[int, int]:
    """(world size, local rank) as torchrun sets them; (1, 0) for a plain process."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the torchrun process group if launched by torchrun, else return a one-process context; `device` is
    this process's (`pdd.devices.claim_device`, already current)."""
    world_size, _ = launch()
    if world_size == 1:
        return DistributedContext(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=_PROCESS_GROUP_TIMEOUT)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


class LossModule(torch.nn.Module):
    """Makes `model.loss_from_features` the `forward` of a module, which is what DDP synchronises."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss_from_features(features)


def wrap_loss(model: torch.nn.Module, context: DistributedContext) -> torch.nn.Module:
    """A callable features -> loss terms, gradient-synchronised across ranks when distributed."""
    module = LossModule(model)
    if not context.enabled:
        return module
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    # some variants leave modules unused (one student, no MPA), as the authors' DDP setting allows
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)
