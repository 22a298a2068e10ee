"""Small, fast PDD models for the model tests: random-init teachers and a tiny VMamba."""

from __future__ import annotations

import pytest
import torch

from pdd.models.options import Fidelity, Variant
from pdd.models.torch_model import PDDModel, build_pdd

# Shapes only depend on VMamba's dims through the adapters' input widths: a 1-block-per-stage, narrow VMamba
# exercises every code path at a fraction of VMamba-Tiny's cost.
TINY_VMAMBA = {"vmamba_depths": (1, 1, 1, 1), "vmamba_dims": (8, 16, 32, 64)}
VARIANTS = tuple(variant.value for variant in Variant)
FIDELITIES = tuple(fidelity.value for fidelity in Fidelity)


@pytest.fixture(scope="session")
def tiny_pdd():
    """`tiny_pdd(variant, fidelity, **overrides)` builds a small random-init model deterministically."""

    def build(variant: str = "full", fidelity: str = "code", **overrides) -> PDDModel:
        torch.manual_seed(0)
        return build_pdd(variant, fidelity, **{**TINY_VMAMBA, **overrides})

    return build


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
