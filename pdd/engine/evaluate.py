"""Scoring the test split and writing a run's results (`metrics.json`, per-image scores, example maps).

Every test image gets its own score (batch size never changes a metric). `metrics.json` reports
both the final epoch (`last`) and the best of the per-epoch evaluations (`best_of_test`): the
latter selects on the test set, as the authors did, and is labelled as such. Which AUROC ranks the
epochs is `eval.selection_scorer` (`pdd.engine.selection`); `best_of_test_by` holds the epoch each
scorer selects, so that both selections can be shown side by side.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pdd import devices
from pdd.config import Params
from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from pdd.engine import runs
from pdd.engine.metrics import compute_metrics
from pdd.engine.results import (
    SCHEMA_VERSION,
    package_versions,
    read_epoch_evaluation,
    utc_now,
    write_epoch_evaluation,
    write_metrics,
)
from pdd.engine.checkpoint import load_checkpoint
from pdd.engine.rundir import RunDir
from pdd.engine.selection import SELECTION_SCORERS, best_epoch, official_first_image_auroc
from pdd.engine.teacher_cache import TeacherFeatureCache
from pdd.errors import DataError, PDDError, WeightsError
from pdd.io import atomic_path, atomic_write_text
from pdd.models.state import load_snapshot, load_trainable_state

log = logging.getLogger(__name__)


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


# Test batches whose teacher features are held in memory at once, so that each is read from the cache (or
# computed) once for all the snapshots scored together: all of HeadCT's 140 test images (1.3 GB in float32)
FEATURES_IN_MEMORY_BYTES = 2 << 30
# The anomaly maps kept for pixel metrics (images with pixel truth) of the snapshots scored together
MAPS_IN_MEMORY_BYTES = 4 << 30


@torch.no_grad()
def score_snapshots(
    model: torch.nn.Module,
    load: Callable[[int], None],
    epochs: Sequence[int],
    loader: torch.utils.data.DataLoader,
    scorings: list[str],
    cache: TeacherFeatureCache | None,
    device: torch.device,
    n_examples: dict[int, int] | None = None,
    progress: bool = True,
) -> dict[int, ScoredTestSet]:
    """Anomaly maps and scores of every test image under each snapshot of `epochs` (`load(epoch)` puts its
    weights into `model`). Each batch's teacher features are read or computed once for all of them: batches
    are taken in chunks of up to FEATURES_IN_MEMORY_BYTES of features, and each snapshot scores a whole chunk
    (one pass of the students for every scoring). The model is put back in its previous mode."""
    was_training = model.training
    model.eval()
    results = {epoch: ScoredTestSet(scores={s: [] for s in scorings}, maps={s: [] for s in scorings})
               for epoch in epochs}
    bar = tqdm(total=len(loader) * len(epochs), desc="evaluate", leave=False, disable=not progress)
    try:
        for chunk in _chunks(model, cache, loader, device):
            for epoch in epochs:
                load(epoch)
                for batch, features in chunk:
                    images = batch["image"].to(device, non_blocking=True)
                    outputs = model.anomaly_maps_for(images, scorings, features)
                    for row in range(len(batch["path"])):
                        _record(results[epoch], batch, row, outputs, (n_examples or {}).get(epoch, 0))
                    bar.update()
    finally:
        bar.close()
        model.train(was_training)
    return results


def _chunks(model: torch.nn.Module, cache: TeacherFeatureCache | None, loader: torch.utils.data.DataLoader,
            device: torch.device) -> Iterator[list[tuple[dict[str, Any], dict[str, torch.Tensor]]]]:
    """The loader's batches with their teacher features, in order, up to FEATURES_IN_MEMORY_BYTES at a time."""
    chunk, held = [], 0
    for batch in loader:
        features = runs.teacher_features(model, cache, batch, device)
        chunk.append((batch, features))
        held += sum(value.numel() * value.element_size() for value in features.values())
        if held >= FEATURES_IN_MEMORY_BYTES:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


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


def select_best_of_test(per_epoch: dict[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The evaluation with the highest pooled image AUROC (earliest on ties): the `per_image` selection."""
    epoch = best_epoch({epoch: m["pooled"]["image_AUROC"] for epoch, m in per_epoch.items()})
    return epoch, per_epoch[epoch]


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
    device: str = "auto",
) -> dict[str, Any]:
    """Score every snapshot of `run_dir` under the current evaluation settings, select `last` and
    `best_of_test`, and write metrics.json, scores_<s>.csv and maps/<s>.npz (from the final snapshot).

    The model, teachers and data are those the run was trained with (its run.json); from the current
    params come only `eval.*`, `train.keep_snapshots` and `paths.*`. Current values of keys that change
    training are reported when they differ, and not applied. `device`: as `pdd.devices.claim_device`.
    """
    directory = RunDir(Path(run_dir))
    started = time.perf_counter()
    with runs.run_lock(directory), devices.claim_device(device) as assignment:
        record = runs.RunRecord.read(directory)
        current = record.load_params(params_file, profile, list(overrides))
        trained = record.trained_params()
        not_applied = runs.differing_keys(current, trained, record.spec)
        if not_applied:
            log.warning("params differ from those %s was trained with; evaluating the run as trained (retrain it "
                        "to apply them): %s", record.spec.id, "; ".join(not_applied))
        recorded = trained.model_dump(mode="json")
        params = Params.model_validate({  # validated again: the mix must be a valid params set too
            **recorded, "eval": current.eval.model_dump(mode="json"), "paths": current.paths.model_dump(mode="json"),
            "train": {**recorded["train"], "keep_snapshots": current.train.keep_snapshots},
        })
        run = runs.RunContext(params, record.spec, directory)
        marker = _completed_training(directory, record)
        device = assignment.device
        numerics = devices.set_tf32(params.eval.tf32)
        model = run.build_model().to(device)
        # the train fingerprint the run was trained under (what its snapshots carry), whatever this pdd computes
        identity = replace(run.identity(model), train_fingerprint=record.run_identity.train_fingerprint)
        _check_identity(directory, record, identity)
        scorings = [s for s in params.eval.scorings if model.supports_scoring(s)]
        selection = _SnapshotScorer(run, model, identity, scorings, device, progress).score_all(
            record.epochs, marker.get("snapshots") or [])
        scored = selection.final
        document = {
            "schema_version": SCHEMA_VERSION,
            "run": {
                "dataset": record.dataset, "variant": record.variant, "arch": record.arch,
                "fidelity": record.fidelity, "seed": record.seed, "profile": record.profile,
                "image_size": record.image_size, "epochs": record.epochs, "demo": record.demo,
            },
            "metrics": selection.labelled(params.eval.selection_scorer, params.eval.batch_size),
            "provenance": {
                "git_commit": record.git_commit, "git_dirty": record.git_dirty,
                "params_sha256": record.params_sha256, "split_sha256": identity.split_sha256,
                # hashed from the weights this evaluation loaded, not copied from the record
                "teacher_weights": identity.teacher_weights, "packages": package_versions(),
                "device": record.device,
                "wall_time_s": round(float(marker["wall_time_s"]) + time.perf_counter() - started, 3),
                "created": utc_now(),
                "fingerprints": {"train": identity.train_fingerprint, "evaluate": run.evaluate_fingerprint()},
                "snapshots_scored": sorted(selection.per_epoch),
                "snapshots_missing": selection.missing,
                "params_not_applied": not_applied,
                "evaluation": {"eval": params.eval.model_dump(mode="json"),
                               "teacher_features": run.teacher_feature_dtype(device.type),
                               "teacher_cache": params.teacher_cache_enabled(record.dataset, device.type),
                               "device": assignment.record(), "numerics": numerics},
                "weights_source": record.imported,
            },
        }
        for scoring in scorings:
            write_scores_csv(directory.scores(scoring), scored, scoring)
            write_example_maps(directory.maps(scoring), scored.chosen_examples(params.eval.save_maps), scoring)
        write_metrics(directory.metrics, document)
        if params.train.keep_snapshots == "selected":
            for path in _prune_unselected(directory, document["metrics"]):
                log.info("pruned %s (train.keep_snapshots: selected)", path)
    return document


def _completed_training(directory: RunDir, record: runs.RunRecord) -> dict[str, Any]:
    """trained.json of a completed run, or a PDDError that says how far training got."""
    marker = directory.completed_training()
    if marker is not None:
        return marker
    done = 0
    if directory.resume_checkpoint.is_file():
        done = load_checkpoint(directory.resume_checkpoint)["epoch"]
    raise PDDError(
        f"{directory.root} has finished {done} of {record.epochs} epochs; complete it with "
        f"`pdd train ... --out {directory.root} --resume` before evaluating"
    )


def _check_identity(directory: RunDir, record: runs.RunRecord, identity: runs.RunIdentity) -> None:
    """The teachers and split must be those the students were trained against."""
    trained = record.run_identity
    if identity.teacher_weights != trained.teacher_weights:
        raise WeightsError(
            f"the teacher weights loaded now ({identity.teacher_weights}) are not those {directory.root} was "
            f"trained with ({trained.teacher_weights}); restore the original weight files or retrain the run"
        )
    if identity.split_sha256 != trained.split_sha256:
        raise DataError(
            f"split.csv of the prepared dataset changed since this run was trained (sha256 "
            f"{identity.split_sha256[:12]}…, run.json has {trained.split_sha256[:12]}…); prepare the dataset "
            "again with the same seed, or retrain the run"
        )


@dataclass
class _Selection:
    """The metrics and per-image scores of every scored snapshot and the final snapshot's full results."""

    per_epoch: dict[int, dict[str, dict]]
    images: dict[int, dict[str, Any]]  # per epoch: paths, labels, scores per scoring (split order)
    final_epoch: int
    final: ScoredTestSet
    missing: list[int]  # epochs trained with a snapshot that is gone and was never scored under these settings

    def labelled(self, selection_scorer: str, batch_size: int) -> dict[str, dict]:
        """`last`, `best_of_test` (selected by `selection_scorer`) and `best_of_test_by` every scorer, per
        scoring, all from evaluations made under the same settings; the metrics are always per image."""
        results = {}
        for scoring, metrics in self.per_epoch[self.final_epoch].items():
            criteria = {
                "per_image": {epoch: m[scoring]["pooled"]["image_AUROC"] for epoch, m in self.per_epoch.items()},
                "official_first_image": {
                    epoch: official_first_image_auroc(images["labels"], images["scores"][scoring], batch_size)
                    for epoch, images in self.images.items()},
            }
            selections = {}
            for scorer in SELECTION_SCORERS:
                epoch = best_epoch(criteria[scorer])
                selections[scorer] = {"epoch": epoch, **self.per_epoch[epoch][scoring], "selected_by": scorer,
                                      "selection_AUROC": criteria[scorer][epoch]}
            results[scoring] = {"last": {"epoch": self.final_epoch, **metrics},
                                "best_of_test": selections[selection_scorer], "best_of_test_by": selections}
        return results


class _SnapshotScorer:
    """Scores a run's snapshots, reusing an epoch's evaluation only when it was made under the same
    train and evaluate fingerprints (so a selection never mixes settings)."""

    def __init__(self, run: runs.RunContext, model: torch.nn.Module, identity: runs.RunIdentity,
                 scorings: list[str], device: torch.device, progress: bool) -> None:
        self.run, self.model, self.scorings, self.device, self.progress = run, model, scorings, device, progress
        self.evaluated_with = {"train": identity.train_fingerprint, "evaluate": run.evaluate_fingerprint()}
        self.loader = run.evaluation_loader(run.open_split("test"), device)
        self.cache = run.teacher_cache(model)
        self._loaded: int | None = None  # the snapshot whose weights the model holds

    def score_all(self, final_epoch: int, trained_epochs: list[int]) -> _Selection:
        """Every epoch training wrote a snapshot for (`trained_epochs`, trained.json): reused where it was
        evaluated under the same settings, the others (and always the final one, whose maps and scores are written)
        scored together, reading the test features once. A snapshot deleted since (`train.keep_snapshots:
        selected`) counts only if it was scored under these settings; otherwise it is named as missing."""
        present = self.run.dir.snapshot_epochs()
        per_epoch: dict[int, dict[str, dict]] = {}
        images: dict[int, dict[str, Any]] = {}
        missing = []
        earlier = sorted(epoch for epoch in {*present, *trained_epochs} if epoch < final_epoch)
        for epoch in earlier:
            reused = self._reused(epoch)
            if reused is not None:
                per_epoch[epoch], images[epoch] = reused
            elif epoch not in present:
                missing.append(epoch)
        to_score = [epoch for epoch in earlier if epoch not in per_epoch and epoch not in missing]
        for group in self._groups(to_score + [final_epoch]):
            scored = score_snapshots(self.model, self._load, group, self.loader, self.scorings, self.cache,
                                     self.device, n_examples={final_epoch: self.run.params.eval.save_maps},
                                     progress=self.progress)
            for epoch in group:
                per_epoch[epoch], images[epoch] = self._written(epoch, scored[epoch])
        if missing:
            log.warning(
                "the snapshots of epochs %s are gone (train.keep_snapshots: selected deletes the unselected ones "
                "after an evaluation) and were never scored under these evaluation settings: best_of_test is "
                "chosen among epochs %s only (metrics.json: provenance.snapshots_missing). To choose among every "
                "epoch, train the run again into a new directory with train.keep_snapshots: all",
                ", ".join(map(str, missing)), ", ".join(map(str, sorted(per_epoch))))
        # the final epoch is scored last, in the last group
        return _Selection(dict(sorted(per_epoch.items())), images, final_epoch, scored[final_epoch], missing)

    def _groups(self, epochs: list[int]) -> list[list[int]]:
        """`epochs` in groups whose anomaly maps kept for pixel metrics fit MAPS_IN_MEMORY_BYTES (all of them
        when no test image has pixel truth, as in every paper dataset but Uni-Medical)."""
        size = self.run.params.data.image_size
        per_epoch = sum(self.loader.dataset.has_masks) * size * size * (4 * len(self.scorings) + 1)
        count = max(1, MAPS_IN_MEMORY_BYTES // per_epoch) if per_epoch else len(epochs)
        return [epochs[start:start + count] for start in range(0, len(epochs), count)]

    def _load(self, epoch: int) -> None:
        """Put snapshot `epoch`'s weights into the model (unless they are there already)."""
        if self._loaded == epoch:
            return
        path = self.run.dir.snapshot(epoch)
        state, metadata = load_snapshot(path, self.device)
        if metadata.get("train_fingerprint") != self.evaluated_with["train"] or metadata.get("epoch") != str(epoch):
            raise PDDError(f"{path} belongs to another training (epoch {metadata.get('epoch')}, train fingerprint "
                           f"{metadata.get('train_fingerprint', '?')[:12]}…); retrain the run")
        load_trainable_state(self.model, state, source=str(path))
        self._loaded = epoch

    def _reused(self, epoch: int) -> tuple[dict[str, dict], dict[str, Any]] | None:
        path = self.run.dir.epoch_evaluation(epoch)
        if not path.is_file():
            return None
        document = read_epoch_evaluation(path)
        if (document.get("evaluated_with") != self.evaluated_with or set(document["metrics"]) != set(self.scorings)
                or document.get("images") is None):
            return None
        log.info("epoch %d: reusing %s (scored under the same settings)", epoch, path)
        return document["metrics"], document["images"]

    def _written(self, epoch: int, scored: ScoredTestSet) -> tuple[dict[str, dict], dict[str, Any]]:
        """The metrics of a scored snapshot, written to its `eval/epoch_XXX.json`, and its per-image scores."""
        metrics = scored.metrics(self.run.params.eval.aupro_fpr_limit)
        images = {"paths": scored.paths, "labels": scored.labels, "scores": scored.scores}
        write_epoch_evaluation(self.run.dir.epoch_evaluation(epoch), {
            "epoch": epoch, "metrics": metrics, "images": images, "evaluated_with": self.evaluated_with})
        summary = ", ".join(f"{s} image AUROC {m['pooled']['image_AUROC']}" for s, m in metrics.items())
        log.info("epoch %d: %s", epoch, summary)
        return metrics, images


def _prune_unselected(directory: RunDir, metrics: dict[str, dict]) -> list[Path]:
    """Delete the snapshots that neither `last` nor (the reported) `best_of_test` of any scoring selected."""
    kept = {results[name]["epoch"] for results in metrics.values() for name in ("last", "best_of_test")}
    pruned = [directory.snapshot(epoch) for epoch in directory.snapshot_epochs() if epoch not in kept]
    for path in pruned:
        path.unlink()
    return pruned
