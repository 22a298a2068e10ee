"""Training and evaluation engine: `train_run`, `evaluate_run`, metrics, checkpoints and `metrics.json`.

`train_run` and `evaluate_run` are imported on first use, so that `pdd.engine.results` (what the
reporting reads) does not pull in the model and data stacks.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"train_run": "pdd.engine.train", "evaluate_run": "pdd.engine.evaluate"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
