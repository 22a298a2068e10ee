"""`Predictor`: score new images with a trained model, exactly as `pdd evaluate` scored its test set.

```python
from pdd import Predictor
predictor = Predictor.from_bundle("models/headct-full")      # or Predictor.from_run("results/headct/...")
for p in predictor.predict(["scan.dcm", "ct.nii.gz", "image.png"]):
    print(p.name, p.score, p.normalised, p.label)             # p.map: the S×S anomaly map
```

The preprocessing is the project's one (`pdd.data.dataset.to_model_input`), the teacher features pass
through the precision the evaluation used (its fp16 cache, when it had one), and the map smoothing is
the evaluation's sigma, so a prepared test image gets the score `pdd evaluate` wrote for it.

Files are read by `Predictor.read` alone, for `predict` and for `pdd predict` alike: the same window
(by default the one the training images were exported with, HeadCT's brain window; ``window="file"``
for each file's own), the same NIfTI axis, the same pixels. Predicting from a bundle imports no
training code (`pdd.engine`); only `from_run` reads a run directory through it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pdd.data.dataset import to_model_input
from pdd.data.images import to_canonical
from pdd.devices import select_device
from pdd.errors import DataError, PDDError, WeightsError
from pdd.inference.bundle import MANIFEST, RANDOM_INIT, Bundle, read_bundle
from pdd.inference.readers import FILE_WINDOW, InputProblem, ScanSlice, Window, iter_scan_slices, parse_window

DEFAULT_BATCH_SIZE = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One scored 2-D image: an image file, a DICOM frame or a NIfTI slice."""

    name: str  # e.g. "a.png" or "ct.nii.gz[slice 12]"
    source: Path  # the file; `<image i>` for the i-th in-memory image
    slice_index: int | None
    score: float  # the raw image score (max of the smoothed map), comparable to the bundle's threshold
    normalised: float  # in [0, 1]; 0.5 is the threshold (`Calibration.normalise`)
    label: int  # 1: anomalous (score >= threshold), 0: normal
    map: np.ndarray  # S×S float32 anomaly map at the model's input size
    image: np.ndarray  # S×S×3 uint8: the input as the model saw it (resized), for overlays


def resolve_device(name: str | None) -> torch.device:
    """`auto` (or None): the current GPU when there is one, else the CPU; `cuda:N` checked and made current."""
    return select_device(name)


def build_bundle_model(bundle: Bundle, device: torch.device,
                       teacher_files: dict[str, str | Path] | None = None) -> torch.nn.Module:
    """The bundle's PDDModel with its teachers and weights loaded and checked, in eval mode on `device`."""
    from pdd.models import build_pdd
    from pdd.models.state import load_trainable_state, teacher_weights

    manifest = bundle.manifest
    options = dict(manifest.model.options)
    recorded = {name: entry.weights for name, entry in manifest.teachers.items()}
    if bundle.teachers is not None or all(weights == RANDOM_INIT for weights in recorded.values()):
        model = build_pdd(manifest.model.arch, manifest.model.fidelity,
                          **{**options, "pretrained": False, "wrn_weights": None, "vmamba_weights": None})
        if bundle.teachers is not None:
            _load_bundled_teachers(model, bundle.teachers, bundle.root)
    else:
        files = {name: Path((teacher_files or {}).get(name) or entry.file or "")
                 for name, entry in manifest.teachers.items()}
        for name, file in files.items():
            if not file.is_file():
                entry = manifest.teachers[name]
                raise WeightsError(
                    f"the {name} teacher weights ({file}) are not here; put the file with sha256 {entry.weights} "
                    f"there (download: {entry.url}, or `pdd weights fetch {name}`), pass it with "
                    f"--teacher {name}=FILE, or export the model with --with-teachers")
        model = build_pdd(manifest.model.arch, manifest.model.fidelity,
                          **{**options, "pretrained": True, "wrn_weights": str(files.get("wrn50")),
                             "vmamba_weights": str(files["vmamba"]) if "vmamba" in files else None})
    loaded = teacher_weights(model)
    if bundle.teachers is None and loaded != recorded:
        raise WeightsError(f"the teachers loaded now ({loaded}) are not those the model was trained with "
                           f"({recorded}); use the original weight files")
    load_trainable_state(model, bundle.trainable, source=str(bundle.weights_file or "the bundle"))
    return model.to(device).eval()


def _load_bundled_teachers(model: torch.nn.Module, state: dict[str, torch.Tensor], root: Path | None) -> None:
    expected = {key for key in model.state_dict() if key.startswith("teachers.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise WeightsError(f"the bundled teacher weights in {root} do not fit the model (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}); export the model again")
    model.load_state_dict(state, strict=False)


class Predictor:
    """Scores images with one bundle (or run); see the module docstring.

    `window`: None (the training images' window, else each file's own), ``"file"`` (each file's own),
    a preset name or ``"C,W"`` (`parse_window`), or a `Window`; `axis`: the NIfTI slicing axis of the
    RAS volume. Both apply to DICOM and NIfTI files read by `read`, `predict` and `pdd predict`."""

    def __init__(self, bundle: Bundle, model: torch.nn.Module, device: torch.device,
                 threshold: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 window: str | Window | None = None, axis: int = 2) -> None:
        self.bundle, self.model, self.device, self.batch_size = bundle, model, device, batch_size
        self.calibration = bundle.calibration
        self.threshold = self.calibration.threshold if threshold is None else float(threshold)
        self.feature_dtype = getattr(torch, bundle.manifest.teacher_features)
        self.window, self.axis = _reading_window(window, bundle.training_window), axis

    @classmethod
    def from_bundle(cls, path: str | Path, *, device: str | None = None,
                    teacher_files: dict[str, str | Path] | None = None, **options: Any) -> Predictor:
        bundle = read_bundle(path)
        resolved = resolve_device(device)
        return cls(bundle, build_bundle_model(bundle, resolved, teacher_files), resolved, **options)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, selection: str | None = None, scoring: str = "ts",
                 device: str | None = None, teacher_files: dict[str, str | Path] | None = None,
                 **options: Any) -> Predictor:
        """The run's selected epoch, as `pdd export` would bundle it (nothing is written)."""
        from pdd.inference.export import bundle_from_run  # reads the run directory through the engine

        bundle = bundle_from_run(run_dir, selection, scoring)
        resolved = resolve_device(device)
        return cls(bundle, build_bundle_model(bundle, resolved, teacher_files), resolved, **options)

    @classmethod
    def from_path(cls, path: str | Path, **options: Any) -> Predictor:
        """A bundle folder (manifest.json) or a run directory (run.json)."""
        path = Path(path)
        if (path / MANIFEST).is_file():
            return cls.from_bundle(path, **options)
        if (path / "run.json").is_file():
            return cls.from_run(path, **options)
        raise PDDError(f"{path} is neither a model bundle (no {MANIFEST}) nor a run directory (no run.json); "
                       "pass the folder `pdd export` wrote or a trained and evaluated run")

    # ---- reading and scoring ----------------------------------------------------------------------------------

    def read(self, inputs: Sequence[str | Path]) -> Iterator[ScanSlice | InputProblem]:
        """Every 2-D image in `inputs` (files and folders) or the problem with each, in this predictor's window
        and axis: the one reading path of `predict` and of `pdd predict`."""
        return iter_scan_slices(inputs, window=self.window, axis=self.axis)

    def predict(self, inputs: Any, batch_size: int | None = None) -> list[Prediction]:
        """Score images given as paths (image, DICOM, NIfTI, folders), PIL images or numpy arrays.

        An input that cannot be read raises DataError naming it (`pdd predict` lists such inputs instead)."""
        items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        slices: list[ScanSlice] = []
        for index, item in enumerate(items):
            if isinstance(item, (str, Path)):
                for found in self.read([item]):
                    if isinstance(found, InputProblem):
                        raise DataError(f"cannot score {found.source}: {found.reason}")
                    slices.append(found)
            else:
                slices.append(ScanSlice(Path(f"<image {index}>"), None, _as_image(item)))
        return list(self.predict_slices(slices, batch_size))

    def predict_slices(self, slices: Iterable[ScanSlice], batch_size: int | None = None) -> Iterator[Prediction]:
        """Predictions in input order, computed `batch_size` images at a time."""
        batch: list[ScanSlice] = []
        for item in slices:
            batch.append(item)
            if len(batch) == (batch_size or self.batch_size):
                yield from self._score(batch)
                batch = []
        if batch:
            yield from self._score(batch)

    @torch.no_grad()
    def _score(self, batch: Sequence[ScanSlice]) -> list[Prediction]:
        size = self.bundle.image_size
        images = torch.stack([to_model_input(item.image, size) for item in batch]).to(self.device)
        features = self.model.teacher_features(images)
        if self.feature_dtype != torch.float32:  # what the evaluation's teacher cache stored
            features = {name: value.to(self.feature_dtype).to(torch.float32) for name, value in features.items()}
        maps, scores = self.model.anomaly_map(images, self.bundle.scoring, features=features)
        scores = scores.float().cpu().numpy().astype(np.float64)
        normalised = self.calibration.normalise(scores)
        maps = maps.float().cpu().numpy()
        return [Prediction(
            name=item.name, source=item.source,
            slice_index=item.slice_index, score=float(score), normalised=float(norm),
            label=int(score >= self.threshold), map=anomaly_map,
            image=np.asarray(item.image.convert("RGB").resize((size, size), Image.BILINEAR)),
        ) for item, score, norm, anomaly_map in zip(batch, scores, normalised, maps)]


def _reading_window(requested: str | Window | None, training: tuple[str, Window] | None) -> Window | None:
    """The window DICOM and NIfTI files are read in (None: each file's own), said once in the log."""
    chosen = parse_window(requested) if isinstance(requested, str) else requested
    if requested is None and training is not None:
        name, chosen = training
        log.info("DICOM and NIfTI inputs are shown in the %s window (C %g, W %g) the training images used; "
                 "--window %s shows each file's own", name, chosen.center, chosen.width, FILE_WINDOW)
    elif chosen is not None:
        log.info("DICOM and NIfTI inputs are shown in the window C %g, W %g", chosen.center, chosen.width)
    else:
        log.info("DICOM and NIfTI inputs are shown in each file's own window (DICOM: its VOI LUT or window, "
                 "NIfTI: cal_min..cal_max; else min..max)%s",
                 "" if requested is not None else "; the model names no training window")
    return chosen


def _as_image(item: Any) -> Image.Image:
    """An in-memory image in the canonical 8-bit form (`to_canonical`: other depths are stretched)."""
    if isinstance(item, Image.Image):
        return to_canonical(item)
    if isinstance(item, np.ndarray) and item.ndim == 2:
        return to_canonical(Image.fromarray(item if item.dtype == np.uint8 else item.astype(np.float32)))
    if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[2] == 3 and item.dtype == np.uint8:
        return to_canonical(Image.fromarray(item, mode="RGB"))
    raise DataError(f"cannot score {type(item).__name__} {getattr(item, 'shape', '')}; pass a path, a PIL image, "
                    "a 2-D array or an H×W×3 uint8 array")
