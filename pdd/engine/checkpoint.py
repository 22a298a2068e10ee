"""Crash-safe training checkpoints that let an interrupted run continue bit-for-bit.

A checkpoint holds everything the next epoch depends on: model and optimizer state, the LR schedule,
the number of finished epochs and the RNG states of torch, numpy and Python. `last.pt` is rewritten
after every epoch and `epoch_XXX.pt` is kept every `keep_every` epochs, so a damaged `last.pt`
(disk full, copied half-way) falls back to the newest readable snapshot instead of losing the run.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pdd.errors import PDDError
from pdd.io import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LAST_NAME = "last.pt"
_EPOCH_PATTERN = re.compile(r"^epoch_(\d{3,})\.pt$")
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


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


@dataclass
class CheckpointManager:
    """Writes and finds the checkpoints of one run directory (`RUN_DIR/checkpoints`)."""

    directory: Path
    keep_every: int = 10

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if self.keep_every < 1:
            raise ValueError(f"keep_every must be >= 1, got {self.keep_every}")

    @property
    def last_path(self) -> Path:
        return self.directory / LAST_NAME

    def save(self, state: dict[str, Any], epoch: int, *, final: bool = False) -> Path:
        """Write `last.pt` (and `epoch_XXX.pt` every `keep_every` epochs or when `final`), atomically."""
        payload = {"format": CHECKPOINT_FORMAT, "epoch": epoch, **state}
        # through a Python file object, so that a full disk raises OSError(ENOSPC), not an opaque RuntimeError
        with atomic_path(self.last_path) as tmp, open(tmp, "wb") as handle:
            torch.save(payload, handle)
        if final or epoch % self.keep_every == 0:
            with atomic_path(self.directory / epoch_checkpoint_name(epoch)) as tmp:
                shutil.copyfile(self.last_path, tmp)
        return self.last_path

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files of checkpoint writes that a killed process left behind.

        They never carry a final name (see `pdd.io.atomic_path`), but each is as large as a checkpoint.
        Call only while holding the run's lock.
        """
        stale = sorted(self.directory.glob(".*.tmp")) if self.directory.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def discard(self) -> None:
        """Remove every checkpoint of this run (a restart under new settings)."""
        if self.directory.is_dir():
            shutil.rmtree(self.directory)

    def candidates(self) -> list[Path]:
        """Checkpoint files, most recent first: `last.pt`, then `epoch_XXX.pt` by decreasing epoch."""
        if not self.directory.is_dir():
            return []
        snapshots = sorted(
            (p for p in self.directory.iterdir() if _EPOCH_PATTERN.match(p.name)),
            key=lambda p: int(_EPOCH_PATTERN.match(p.name).group(1)),
            reverse=True,
        )
        last = [self.last_path] if self.last_path.is_file() else []
        return last + snapshots

    def load_latest(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The newest readable checkpoint, skipping damaged ones with a warning; None when there is none."""
        candidates = self.candidates()
        for path in candidates:
            try:
                return load_checkpoint(path, map_location)
            except PDDError as exc:
                log.warning("%s; falling back to an older checkpoint", exc)
        if candidates:
            raise PDDError(
                f"no readable checkpoint in {self.directory} (tried {', '.join(p.name for p in candidates)}); "
                "delete that directory to restart the run from scratch"
            )
        return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one checkpoint with `weights_only=True`; a damaged or foreign file raises PDDError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except UNREADABLE_ERRORS as exc:
        raise PDDError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "epoch" not in state:
        raise PDDError(f"checkpoint {path} is not a pdd checkpoint of format {CHECKPOINT_FORMAT}")
    return state
