"""What `pdd predict` leaves in its output folder, written as predictions come so a crash loses nothing:

```
OUT_DIR/
  predictions.csv    input, slice, score, normalised_score, label, overlay (one row per scored image)
  errors.csv         input, reason (every input that could not be scored; header only when none)
  overlays/*.png     the input beside its heatmap overlay, for people
  maps/*.npz         the raw anomaly maps (--save-maps)
  index.html         a gallery sorted by score; opens from the folder in any browser, no network
```

The heatmap colour scale is the bundle's normalisation applied to every pixel, so colours mean the same
in every image: the hottest pixel's colour is the image's normalised score and 0.5 (green in the jet
colour map) is the threshold. A per-image min-max scale, as the authors' visualiser uses, would paint
noise on a normal image as red as a haemorrhage.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from PIL import Image

from pdd.inference.bundle import Calibration
from pdd.inference.predictor import Prediction
from pdd.inference.readers import InputProblem
from pdd.io import atomic_write_text

OVERLAY_ALPHA = 0.45  # the authors' vis_eval.py blend


@functools.lru_cache(maxsize=1)
def _jet() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, anomaly_map: np.ndarray, calibration: Calibration) -> np.ndarray:
    """The input and its heatmap overlay side by side (S×2S×3 uint8)."""
    levels = np.rint(calibration.normalise(anomaly_map) * 255).astype(np.uint8)
    heat = _jet()[levels]
    blended = np.rint((1 - OVERLAY_ALPHA) * image.astype(np.float32) + OVERLAY_ALPHA * heat).astype(np.uint8)
    return np.concatenate([image, blended], axis=1)


def _file_stem(index: int, name: str) -> str:
    return f"{index:05d}_" + re.sub(r"[^A-Za-z0-9-]+", "_", name)[:80].strip("_")


@dataclass
class PredictionWriter:
    """Streams predictions and problems into `out`; `finish` writes the gallery."""

    out: Path
    calibration: Calibration
    threshold: float
    model: str  # one line describing the model, for the gallery
    warnings: list[str] = field(default_factory=list)
    save_maps: bool = False
    cards: list[dict[str, Any]] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        (self.out / "overlays").mkdir(parents=True, exist_ok=True)
        if self.save_maps:
            (self.out / "maps").mkdir(exist_ok=True)
        self._predictions: TextIO = open(self.out / "predictions.csv", "w", newline="", encoding="utf-8")
        self._errors: TextIO = open(self.out / "errors.csv", "w", newline="", encoding="utf-8")
        self._rows = csv.writer(self._predictions, lineterminator="\n")
        self._rows.writerow(["input", "slice", "score", "normalised_score", "label", "overlay"])
        self._error_rows = csv.writer(self._errors, lineterminator="\n")
        self._error_rows.writerow(["input", "reason"])

    def add(self, prediction: Prediction) -> None:
        stem = _file_stem(len(self.cards), prediction.name)
        overlay_file = f"overlays/{stem}.png"
        Image.fromarray(overlay(prediction.image, prediction.map, self.calibration)).save(
            self.out / overlay_file, compress_level=1)
        if self.save_maps:
            np.savez_compressed(self.out / "maps" / f"{stem}.npz", map=prediction.map, score=prediction.score,
                                name=prediction.name)
        label = "anomalous" if prediction.label else "normal"
        self._rows.writerow([str(prediction.source), "" if prediction.slice_index is None else prediction.slice_index,
                             repr(prediction.score), f"{prediction.normalised:.6f}", label, overlay_file])
        self._predictions.flush()
        self.cards.append({"name": prediction.name, "score": prediction.score, "normalised": prediction.normalised,
                           "label": label, "overlay": overlay_file})

    def add_problem(self, problem: InputProblem) -> None:
        self._error_rows.writerow([str(problem.source), problem.reason])
        self._errors.flush()
        self.problems.append(problem)

    def finish(self) -> Path:
        """Close the tables and write index.html; returns its path."""
        self._predictions.close()
        self._errors.close()
        from jinja2 import Environment, PackageLoader

        # every value is escaped: file names, error messages and library messages come from the inputs
        environment = Environment(loader=PackageLoader("pdd.inference", "templates"), autoescape=True)
        page = environment.get_template("index.html.j2").render(
            cards=sorted(self.cards, key=lambda card: -card["score"]), problems=self.problems, model=self.model,
            threshold=self.threshold, warnings=self.warnings,
            n_anomalous=sum(card["label"] == "anomalous" for card in self.cards))
        index = self.out / "index.html"
        atomic_write_text(index, page)
        return index

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._predictions.closed:
            self._predictions.close()
            self._errors.close()
