"""What training leaves on disk: one resumable checkpoint and lean, pickle-free weight snapshots.

* `checkpoints/last.pt` holds everything the next epoch depends on (trainable weights, optimizer and
  LR-schedule state, finished epochs, the RNG states of torch, numpy and Python), so an interrupted run
  continues bit for bit. It is replaced atomically after every epoch and deleted when the run completes:
  a run keeps one optimizer state at most (for `full`, 3x its 122 MB of weights).
* `snapshots/epoch_XXX.safetensors` holds the trainable modules' weights only (no optimizer, no pickle)
  every `train.eval_every` epochs and at the end, with the run, epoch and train fingerprint as metadata
  (`pdd.models.state.save_snapshot`; a model bundle reads the same file). `pdd evaluate` scores them and
  selects among them.
"""

from __future__ import annotations

import logging
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdd.errors import PDDError
from pdd.io import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
# what torch.load raises on a truncated or overwritten file
UNREADABLE_ERRORS = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError)


def capture_rng_state() -> dict[str, Any]:
    """RNG states in types that `torch.load(weights_only=True)` accepts (no numpy arrays)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- the resumable checkpoint ---------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict[str, Any], epoch: int) -> None:
    """Replace `path` atomically with `state` after `epoch` finished epochs."""
    payload = {"format": CHECKPOINT_FORMAT, "epoch": epoch, **state}
    # through a Python file object, so that a full disk raises OSError(ENOSPC), not an opaque RuntimeError
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the resumable checkpoint with `weights_only=True`; a damaged or foreign file raises PDDError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except UNREADABLE_ERRORS as exc:
        raise PDDError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); the run cannot resume from it. "
            "Delete it and train again with --resume --restart-if-changed (the run starts afresh)"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "epoch" not in state:
        raise PDDError(f"checkpoint {path} is not a pdd resumable checkpoint of format {CHECKPOINT_FORMAT}; "
                       "delete it and train again with --resume --restart-if-changed")
    return state
