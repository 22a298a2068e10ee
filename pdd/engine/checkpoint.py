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


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """RNG states in types that `torch.load(weights_only=True)` accepts (no numpy arrays): Python's, numpy's,
    torch's, every visible GPU's and which GPU the run computes on (`device`)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
        if device is not None and device.type == "cuda":
            state["cuda_device"] = device.index
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> list[str]:
    """Restore what `capture_rng_state` saved, as far as this machine can; returns what could not be restored.

    A checkpoint may come from a machine with more GPUs, or fewer, or none. Each visible GPU gets the state
    saved for its index, and the GPU this run computes on (`device`) the state of the GPU it computed on when
    saved (with one GPU per job, `pdd.devices`, a resumed run may well land on another index). States of GPUs
    not visible here are left out and named, never an IndexError."""
    random.setstate(state["python"])
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    saved = list(state.get("cuda", []))
    if not saved:
        return []
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    states = dict(enumerate(saved[:visible]))
    computed_on = state.get("cuda_device")
    if device is not None and device.type == "cuda" and computed_on is not None and computed_on < len(saved):
        states[device.index] = saved[computed_on]
    for index, rng in states.items():
        torch.cuda.set_rng_state(rng, index)
    mapped = computed_on if device is not None and device.type == "cuda" else None
    lost = [index for index in range(len(saved)) if index >= visible and index != mapped]
    if not lost:
        return []
    where = f"{visible} GPU(s) are visible here" if visible else "this process sees no GPU"
    return [f"the checkpoint holds the CUDA RNG states of {len(saved)} GPU(s), {where}: the states of GPU(s) "
            f"{', '.join(map(str, lost))} were not restored (pdd's training draws no random numbers on a GPU; "
            "a model that did would continue from another random stream there)"]


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
