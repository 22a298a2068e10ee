"""`RunDir`: the one place that knows the name of every file inside a run directory.

```
RUN_DIR/
  run.json                      how the run was started, with the complete resolved params (train)
  checkpoints/last.pt           resumable state (optimizer, schedule, RNG); replaced every epoch, deleted at the end
  snapshots/epoch_XXX.safetensors  weights of the trainable modules every train.eval_every epochs and at the end
  trained.json                  written last by training: its completion marker and the workflow's train output
  dvclive/                      loss curves (train)
  eval/epoch_XXX.json           each snapshot's metrics and the settings it was scored under (evaluate)
  scores_<scoring>.csv, maps/<scoring>.npz, metrics.json   the final results (evaluate)
  .lock                         held while a process works on the run
```
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

# Version of this layout, recorded in run.json; directories of another layout are refused with what to do
RUN_LAYOUT = 2
_SNAPSHOT_PATTERN = re.compile(r"^epoch_(\d{3,})\.safetensors$")
_OLD_CHECKPOINT_PATTERN = re.compile(r"^epoch_\d{3,}\.pt$")


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- written by training ------------------------------------------------------------------

    @property
    def record(self) -> Path:
        return self.root / "run.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def resume_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def snapshot(self, epoch: int) -> Path:
        return self.snapshots / f"epoch_{epoch:03d}.safetensors"

    def snapshot_epochs(self) -> list[int]:
        """Epochs that have a snapshot, ascending."""
        if not self.snapshots.is_dir():
            return []
        matches = (_SNAPSHOT_PATTERN.match(path.name) for path in self.snapshots.iterdir())
        return sorted(int(match.group(1)) for match in matches if match)

    @property
    def trained_marker(self) -> Path:
        return self.root / "trained.json"

    def completed_training(self) -> dict | None:
        """trained.json of a run whose training completed (its final snapshot present), else None."""
        if not self.trained_marker.is_file():
            return None
        marker = json.loads(self.trained_marker.read_text(encoding="utf-8"))
        return marker if self.snapshot(marker["epochs"]).is_file() else None

    @property
    def dvclive(self) -> Path:
        return self.root / "dvclive"

    # ---- written by evaluation ----------------------------------------------------------------

    @property
    def evaluations(self) -> Path:
        return self.root / "eval"

    def epoch_evaluation(self, epoch: int) -> Path:
        return self.evaluations / f"epoch_{epoch:03d}.json"

    def scores(self, scoring: str) -> Path:
        return self.root / f"scores_{scoring}.csv"

    def maps(self, scoring: str) -> Path:
        return self.root / "maps" / f"{scoring}.npz"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    # ---- whole-directory operations -----------------------------------------------------------

    def old_layout_files(self) -> list[Path]:
        """Files only the previous layout wrote (full checkpoints per epoch)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(path for path in self.checkpoints.iterdir() if _OLD_CHECKPOINT_PATTERN.match(path.name))

    def clear(self) -> None:
        """Remove everything a run produced (a fresh start or a restart under new settings); keeps the lock."""
        for directory in (self.checkpoints, self.snapshots, self.evaluations, self.dvclive, self.root / "maps"):
            shutil.rmtree(directory, ignore_errors=True)
        for path in (self.trained_marker, self.metrics, *self.root.glob("scores_*.csv")):
            path.unlink(missing_ok=True)

    def remove_temporaries(self) -> list[Path]:
        """Delete what atomic writes killed mid-way left behind in the large-file folders (see `pdd.io`).

        Call only while holding the run's lock."""
        stale = [path for directory in (self.checkpoints, self.snapshots) if directory.is_dir()
                 for path in sorted(directory.glob(".*.tmp"))]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale
