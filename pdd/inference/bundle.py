"""A trained model that leaves its run directory: a pickle-free folder a predictor rebuilds exactly.

```
MODEL_DIR/
  manifest.json              what the model is (`pdd.inference.manifest.Manifest`): architecture and options,
                             teachers, input and training window, selection, calibration, provenance, and the
                             sha256 of every file below
  model.safetensors          the trainable weights of the selected epoch (the run's own snapshot)
  teachers/<t>.safetensors   the frozen teachers' weights (only with `pdd export --with-teachers`)
  params.yaml                the resolved params the run was trained with (for reference)
  model.md                   a short card for people: dataset, variant, metrics, caveats, how to use
```

Nothing in a bundle is unpickled: weights are safetensors, everything else JSON/YAML/Markdown. A file
whose sha256 differs from the manifest's is refused, so an altered or damaged bundle never scores.
This module is what prediction needs (`read_bundle`, `Bundle`, `Calibration`) and imports no training
code; making a bundle from a run is `pdd.inference.export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pdd.errors import PDDError, WeightsError
from pdd.inference.manifest import Manifest, read_manifest
from pdd.inference.readers import Window
from pdd.io import sha256_file

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CARD = "model.md"
PARAMS = "params.yaml"
RANDOM_INIT = "random-init"  # pdd.models.weights.RANDOM_INIT, without importing the model code


@dataclass(frozen=True)
class Calibration:
    """How raw scores become a label and a number in [0, 1].

    `normalise` is anomalib's min-max normalisation around the threshold: `(s - threshold) / (max - min)
    + 0.5`, clipped to [0, 1], with min and max over the scores the threshold was chosen on, so 0.5 is the
    threshold and a normalised score above 0.5 is labelled anomalous."""

    threshold: float
    minimum: float
    maximum: float

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> Calibration:
        section = manifest.calibration
        return cls(section.threshold, section.scores.min, section.scores.max)

    def normalise(self, scores: np.ndarray | float) -> np.ndarray:
        span = self.maximum - self.minimum
        scaled = (np.asarray(scores, dtype=np.float64) - self.threshold) / (span if span > 0 else 1.0) + 0.5
        return np.clip(scaled, 0.0, 1.0)


@dataclass
class Bundle:
    """A model bundle in memory: the manifest, the trainable weights and (optionally) the teachers'."""

    manifest: Manifest
    trainable: dict[str, torch.Tensor]
    teachers: dict[str, torch.Tensor] | None = None
    weights_file: Path | None = None  # the safetensors file the trainable weights were read from
    root: Path | None = None  # the bundle folder, when read from one

    @property
    def image_size(self) -> int:
        return self.manifest.input.image_size

    @property
    def scoring(self) -> str:
        return self.manifest.model.scoring

    @property
    def training_window(self) -> tuple[str, Window] | None:
        """(name, window) the training images were exported with (HeadCT: brain): the default for DICOM and NIfTI."""
        window = self.manifest.input.window
        return None if window is None else (window.name, Window(window.center, window.width))

    @property
    def calibration(self) -> Calibration:
        return Calibration.from_manifest(self.manifest)

    @property
    def random_teachers(self) -> bool:
        return any(t.weights == RANDOM_INIT for t in self.manifest.teachers.values())

    @property
    def description(self) -> str:
        selection = self.manifest.selection
        return f"{self.manifest.run.id} epoch {selection.epoch} ({selection.protocol})"

    @property
    def warnings(self) -> list[str]:
        """What every output made with this model must say."""
        notes = []
        if self.random_teachers:
            notes.append("random-init teachers (no pretrained weights): a demo model, its scores mean nothing "
                         "clinically")
        if self.manifest.run.demo:
            notes.append("trained on the synthetic demo data")
        return notes


def read_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle folder: every file's sha256 must match the manifest (no pickle involved)."""
    from safetensors.torch import load_file

    from pdd.models.state import load_snapshot

    root = Path(path)
    manifest_file = root / MANIFEST
    if not manifest_file.is_file():
        raise PDDError(f"{root} is not a pdd model bundle (no {MANIFEST}); make one with `pdd export --run RUN_DIR "
                       f"--out {root}`, or pass a run directory")
    manifest = read_manifest(manifest_file)
    files = manifest.files or {}
    for relative, expected in files.items():
        file = root / relative
        if not file.is_file():
            raise WeightsError(f"{root}: {relative} is missing; copy the whole bundle folder, or export it again")
        actual = sha256_file(file)
        if actual != expected:
            raise WeightsError(f"{root}: {relative} has sha256 {actual[:12]}…, the manifest records {expected[:12]}…: "
                               "the bundle was altered or damaged; export it again from its run")
    if WEIGHTS not in files:
        raise WeightsError(f"{root}: the manifest lists no {WEIGHTS}; export the model again")
    trainable, _ = load_snapshot(root / WEIGHTS)
    teachers = {}
    for entry in manifest.teachers.values():
        if entry.bundled:
            teachers.update(load_file(str(root / entry.bundled)))
    return Bundle(manifest, trainable, teachers or None, weights_file=root / WEIGHTS, root=root)
