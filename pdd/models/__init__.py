"""PDD models: the frozen teachers (VMamba-Tiny, wide-ResNet50-2), the five architectures, losses and maps.

The torch-backed names are imported on first use, so that `pdd.models.options` (which `pdd.config`
reads to validate params.yaml) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Fidelity": "pdd.models.options",
    "PDDOptions": "pdd.models.options",
    "Variant": "pdd.models.options",
    "PDDModel": "pdd.models.torch_model",
    "build_pdd": "pdd.models.torch_model",
    "selective_scan": "pdd.ops",
    "VMamba": "pdd.models.vmamba",
    "vmamba_tiny": "pdd.models.vmamba",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
