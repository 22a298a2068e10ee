"""Scoring the test split and writing a run's results (`metrics.json`, per-image scores, example maps).

Every test image gets its own score (batch size never changes a metric). `metrics.json` reports
both the final epoch (`last`) and the best of the per-epoch evaluations (`best_of_test`): the
latter selects on the test set, as the authors did, and is labelled as such.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from pdd.engine import runs
from pdd.engine.metrics import compute_metrics
from pdd.engine.results import (
    SCHEMA_VERSION,
    package_versions,
    read_epoch_evaluation,
    utc_now,
    write_metrics,
)
from pdd.engine.teacher_cache import TeacherFeatureCache
from pdd.errors import PDDError
from pdd.io import atomic_path, atomic_write_text

EVAL_DIR = "eval"
MAPS_DIR = "maps"


@dataclass
class ScoredTestSet:
    """Per-image results of one pass over the test split, for every requested scoring."""

    paths: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    has_mask: list[bool] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    # full-size masks and maps of the images whose pixel truth is known (`has_mask`), in their order
    masks: list[np.ndarray] = field(default_factory=list)
    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)
    # a few images kept whole for the figures, chosen in dataset order
    examples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"normal": [], "masked": [], "unmasked": []}
    )

    def metrics(self, max_fpr: float) -> dict[str, dict]:
        """compute_metrics for every scoring (pixel metrics only when an anomalous image has a mask)."""
        labels = np.asarray(self.labels)
        has_mask = np.asarray(self.has_mask, dtype=bool)
        pixel_rows = np.flatnonzero(has_mask)
        results = {}
        for scoring, scores in self.scores.items():
            masks = maps = None
            if np.any(labels[pixel_rows] == 1):  # other rows stay zero: compute_metrics skips them by has_mask
                masks = _scatter(self.masks, pixel_rows, labels.size)
                maps = _scatter(self.maps[scoring], pixel_rows, labels.size)
            results[scoring] = compute_metrics(labels, scores, self.classes, masks, maps, has_mask, max_fpr=max_fpr)
        return results

    def chosen_examples(self, count: int) -> list[dict[str, Any]]:
        """`count` images in dataset order: up to half anomalous (masked ones first), normal ones for the rest."""
        anomalous = (self.examples["masked"] + self.examples["unmasked"])[: (count + 1) // 2]
        normal = self.examples["normal"][: count - len(anomalous)]
        return anomalous + normal


def _scatter(rows: list[np.ndarray], selection: np.ndarray, total: int) -> np.ndarray:
    """Stack `rows` at `selection` into an array of `total` rows (zeros elsewhere, never read)."""
    out = np.zeros((total, *rows[0].shape), dtype=rows[0].dtype)
    out[selection] = np.stack(rows)
    return out


def _denormalise(image: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = (image.cpu() * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(1, 2, 0).numpy()


@torch.no_grad()
def score_test_set(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    scorings: list[str],
    cache: TeacherFeatureCache | None,
    device: torch.device,
    n_examples: int = 0,
    progress: bool = True,
) -> ScoredTestSet:
    """Anomaly maps and scores of every test image; the model is put back in its previous mode."""
    was_training = model.training
    model.eval()
    result = ScoredTestSet(scores={s: [] for s in scorings}, maps={s: [] for s in scorings})
    try:
        for batch in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
            features = runs.teacher_features(model, cache, batch, device)
            images = batch["image"].to(device)
            outputs = {scoring: model.anomaly_map(images, scoring, features=features) for scoring in scorings}
            for row in range(len(batch["path"])):
                _record(result, batch, row, outputs, n_examples)
    finally:
        model.train(was_training)
    return result


def _record(
    result: ScoredTestSet, batch: dict[str, Any], row: int, outputs: dict[str, tuple], n_examples: int
) -> None:
    label, has_mask = int(batch["label"][row]), bool(batch["has_mask"][row])
    result.paths.append(batch["path"][row])
    result.classes.append(batch["cls"][row])
    result.labels.append(label)
    result.has_mask.append(has_mask)
    maps = {scoring: maps[row].float().cpu().numpy() for scoring, (maps, _) in outputs.items()}
    for scoring, (_, scores) in outputs.items():
        result.scores[scoring].append(float(scores[row]))
    mask = (batch["mask"][row, 0] > 0.5).to(torch.uint8).numpy()
    if has_mask:
        result.masks.append(mask)
        for scoring, values in maps.items():
            result.maps[scoring].append(values)
    kind = "normal" if label == 0 else ("masked" if has_mask else "unmasked")
    if len(result.examples[kind]) < n_examples:
        result.examples[kind].append({
            "image": _denormalise(batch["image"][row]), "mask": mask, "maps": maps, "label": label,
            "path": batch["path"][row], "cls": batch["cls"][row],
            "scores": {scoring: result.scores[scoring][-1] for scoring in outputs},
        })


def epoch_evaluation_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / EVAL_DIR / f"epoch_{epoch:03d}.json"


def select_best_of_test(per_epoch: dict[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The evaluation with the highest pooled image AUROC (earliest on ties): the authors' selection."""

    def auroc(item: tuple[int, dict[str, Any]]) -> float:
        value = item[1]["pooled"]["image_AUROC"]
        return -1.0 if value is None else value

    ordered = sorted(per_epoch.items())
    return max(ordered, key=auroc)


def write_scores_csv(path: Path, scored: ScoredTestSet, scoring: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "class", "label", "score"])
    for row in zip(scored.paths, scored.classes, scored.labels, scored.scores[scoring]):
        writer.writerow([row[0], row[1], row[2], repr(row[3])])
    atomic_write_text(path, buffer.getvalue())


def write_example_maps(path: Path, examples: list[dict[str, Any]], scoring: str) -> None:
    """`maps/<scoring>.npz`: images (N×S×S×3 uint8), masks (N×S×S uint8 0/1), maps (N×S×S float32), labels,
    paths, classes and scores, for the figure rules."""
    size = examples[0]["image"].shape[0] if examples else 0
    arrays = {
        "images": np.stack([e["image"] for e in examples]) if examples else np.zeros((0, size, size, 3), np.uint8),
        "masks": np.stack([e["mask"] for e in examples]) if examples else np.zeros((0, size, size), np.uint8),
        "maps": np.stack([e["maps"][scoring] for e in examples]).astype(np.float32)
        if examples else np.zeros((0, size, size), np.float32),
        "labels": np.asarray([e["label"] for e in examples], dtype=np.int64),
        "paths": np.asarray([e["path"] for e in examples], dtype=str),
        "classes": np.asarray([e["cls"] for e in examples], dtype=str),
        "scores": np.asarray([e["scores"][scoring] for e in examples], dtype=np.float32),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def evaluate_run(
    run_dir: str | Path,
    params_file: str | Path | None = None,
    *,
    profile: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Score the final checkpoint of `run_dir` and write metrics.json, scores_<s>.csv and maps/<s>.npz."""
    run_dir = Path(run_dir)
    record = runs.RunRecord.read(run_dir)
    params = record.load_params(params_file, profile, list(overrides))
    started = time.perf_counter()
    with runs.run_lock(run_dir):
        runs.check_same_split(params, record)
        checkpoint = runs.checkpoints(run_dir, params).load_latest()
        if checkpoint is None or checkpoint["epoch"] < record.epochs:
            done = 0 if checkpoint is None else checkpoint["epoch"]
            raise PDDError(
                f"{run_dir} has finished {done} of {record.epochs} epochs; complete it with "
                f"`pdd train ... --out {run_dir} --resume` before evaluating"
            )
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = runs.build_model(params, record.spec).to(device)
        runs.load_trainable_state(model, checkpoint["model"])
        scorings = [s for s in params.eval.scorings if model.supports_scoring(s)]
        scored = score_test_set(
            model, runs.evaluation_loader(params, runs.open_split(params, record.dataset, "test")), scorings,
            runs.teacher_cache(params, model), device, n_examples=params.eval.save_maps, progress=progress,
        )
        last_metrics = scored.metrics(params.eval.aupro_fpr_limit)
        document = {
            "schema_version": SCHEMA_VERSION,
            "run": {
                "dataset": record.dataset, "variant": record.variant, "arch": record.arch,
                "fidelity": record.fidelity, "seed": record.seed, "profile": record.profile,
                "image_size": record.image_size, "epochs": record.epochs, "demo": record.demo,
            },
            "metrics": _labelled_metrics(run_dir, record.epochs, last_metrics),
            "provenance": {
                "git_commit": record.git_commit, "git_dirty": record.git_dirty,
                "params_sha256": record.params_sha256, "split_sha256": record.split_sha256,
                "teacher_weights": record.teacher_weights, "packages": package_versions(),
                "device": record.device,
                "wall_time_s": round(float(checkpoint.get("wall_time_s", 0.0)) + time.perf_counter() - started, 3),
                "created": utc_now(),
            },
        }
        for scoring in scorings:
            write_scores_csv(run_dir / f"scores_{scoring}.csv", scored, scoring)
            write_example_maps(run_dir / MAPS_DIR / f"{scoring}.npz", scored.chosen_examples(params.eval.save_maps),
                               scoring)
        write_metrics(run_dir / "metrics.json", document)
    return document


def _labelled_metrics(run_dir: Path, final_epoch: int, last: dict[str, dict]) -> dict[str, dict]:
    """`last` and `best_of_test` per scoring; the final epoch's entry is the evaluation just made."""
    per_epoch = {}
    for path in sorted((run_dir / EVAL_DIR).glob("epoch_*.json")):
        document = read_epoch_evaluation(path)
        per_epoch[document["epoch"]] = document["metrics"]
    results = {}
    for scoring, metrics in last.items():
        candidates = {epoch: m[scoring] for epoch, m in per_epoch.items() if scoring in m and epoch <= final_epoch}
        candidates[final_epoch] = metrics
        best_epoch, best = select_best_of_test(candidates)
        results[scoring] = {
            "last": {"epoch": final_epoch, **metrics},
            "best_of_test": {"epoch": best_epoch, **best},
        }
    return results
