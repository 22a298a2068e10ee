"""The authors' optimiser and learning-rate schedule, and RD4AD's.

Adam(lr 2e-3, betas (0.5, 0.999)) with CosineAnnealingLR(T_max 40, eta_min 2e-4) stepped once per
epoch. PyTorch's cosine schedule is periodic past T_max, so over the official 100 epochs the rate
decays to 2e-4 at epoch 40 and climbs back to 2e-3 at epoch 80: a warm restart. `cosine_periodic`
keeps that behaviour; `cosine_single` decays once over the whole run instead; `constant` keeps the
initial rate (RD4AD's main.py has no scheduler). Which parameters each reads: `pdd.config.schema.SCHEDULE_KEYS`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pdd.config.schema import SCHEDULE_KEYS

SCHEDULES = tuple(SCHEDULE_KEYS)


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter],
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.5, 0.999),
    weight_decay: float = 0.0,
) -> torch.optim.Adam:
    return torch.optim.Adam(parameters, lr=lr, betas=tuple(betas), eps=1e-8, weight_decay=weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str = "cosine_periodic",
    epochs: int = 100,
    t_max: int = 40,
    eta_min: float = 2e-4,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: the authors' periodic cosine, a single decay, or a constant rate (a scheduler all the
    same, so that checkpoints hold and resume one whatever the recipe)."""
    if kind == "cosine_periodic":
        period = t_max
    elif kind == "cosine_single":
        period = max(epochs, 1)
    elif kind == "constant":
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=period, eta_min=eta_min)
