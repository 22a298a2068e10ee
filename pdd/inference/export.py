"""`pdd export`: an evaluated run becomes a model bundle (`pdd.inference.bundle` reads it back).

The calibration (the F1-max threshold and score statistics) comes from the per-image scores `pdd
evaluate` wrote for the selected epoch, and the manifest keeps the evaluation's settings (smoothing
sigma, teacher-feature precision), so a predictor reproduces the evaluation's scores exactly. This is
the side that reads run directories, through the engine's run records and results; predicting from a
bundle never imports it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pdd import __version__
from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from pdd.engine import runs
from pdd.engine.metrics import f1_max_threshold
from pdd.engine.results import read_epoch_evaluation, read_metrics
from pdd.engine.rundir import RunDir
from pdd.errors import PDDError
from pdd.inference.bundle import CARD, MANIFEST, PARAMS, RANDOM_INIT, WEIGHTS, Bundle
from pdd.inference.manifest import BUNDLE_FORMAT, BUNDLE_VERSION, Manifest, validate_manifest
from pdd.inference.readers import WINDOW_PRESETS
from pdd.io import atomic_write_text, sha256_file
from pdd.models.state import load_snapshot, save_snapshot

TEACHER_MODELS = {"wrn50": "timm wide_resnet50_2.{tag}", "vmamba": "VMamba-Tiny (vanilla v0, VMamba release #v0cls)"}
SELECTION_CAVEAT = ("best_of_test selects the epoch on the test set (the authors' protocol): its test metrics "
                    "are optimistic; judge the model on data it was not selected on")


def calibrate(labels: list[int], scores: list[float], source: str) -> dict[str, Any]:
    """The manifest's calibration section from one evaluation's per-image scores."""
    labels_array, scores_array = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels_array.min(initial=1) == labels_array.max(initial=0):
        raise PDDError(f"{source} has test images of one label only; an F1-max threshold needs both normal and "
                       "anomalous test images")
    threshold, f1 = f1_max_threshold(labels_array, scores_array)
    normal = scores_array[labels_array == 0]

    def stats(values: np.ndarray) -> dict[str, float]:
        return {"count": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
                "min": float(values.min()), "max": float(values.max()),
                "p95": float(np.quantile(values, 0.95)), "p99": float(np.quantile(values, 0.99))}

    return {"threshold": threshold, "threshold_rule": "F1-max on the evaluation's test scores (score >= threshold "
            "is anomalous)", "f1_at_threshold": f1, "normal_scores": stats(normal), "scores": stats(scores_array),
            "normalisation": "clip((score - threshold) / (scores.max - scores.min) + 0.5, 0, 1), as anomalib",
            "source": source}


def bundle_from_run(run_dir: str | Path, selection: str | None = None, scoring: str = "ts") -> Bundle:
    """The bundle of an evaluated run: the epoch `selection` chose for `scoring` (default: the run's
    `reporting.selection`), calibrated on that epoch's per-image test scores."""
    directory = RunDir(Path(run_dir))
    record = runs.RunRecord.read(directory)
    if not directory.metrics.is_file():
        raise PDDError(f"{directory.root} has not been evaluated (no metrics.json); run `pdd evaluate --run "
                       f"{directory.root}` first: the bundle's threshold comes from that evaluation")
    document = read_metrics(directory.metrics)
    evaluation = document["provenance"].get("evaluation")
    if evaluation is None:
        raise PDDError(f"{directory.metrics} was written by an earlier pdd that did not record its evaluation "
                       f"settings; run `pdd evaluate --run {directory.root}` again, then export")
    trained = record.trained_params()
    selection = selection or trained.reporting.selection
    if scoring not in document["metrics"]:
        raise PDDError(f"{record.spec.id} was evaluated with scorings {sorted(document['metrics'])}, not {scoring!r}")
    selected = document["metrics"][scoring][selection]
    epoch = int(selected["epoch"])
    snapshot = directory.snapshot(epoch)
    if not snapshot.is_file():
        raise PDDError(f"{snapshot} (epoch {epoch}, chosen by {selection}) is gone (train.keep_snapshots: selected "
                       "keeps only what the current selection chose); export with the selection that kept it, or "
                       "retrain the run")
    per_image = read_epoch_evaluation(directory.epoch_evaluation(epoch))
    if per_image.get("evaluated_with") != document["provenance"]["fingerprints"] or per_image.get("images") is None:
        raise PDDError(f"{directory.epoch_evaluation(epoch)} is not from the evaluation metrics.json reports; run "
                       f"`pdd evaluate --run {directory.root}` again, then export")
    trainable, metadata = load_snapshot(snapshot)
    if metadata.get("train_fingerprint") != record.run_identity.train_fingerprint:
        raise PDDError(f"{snapshot} belongs to another training than {directory.record}; retrain the run")
    images = per_image["images"]
    source = (f"{directory.epoch_evaluation(epoch)}: {len(images['labels'])} test images "
              f"({images['labels'].count(0)} normal) of {record.spec.id}, epoch {epoch}, scoring {scoring}")
    manifest = _manifest(record, trained, evaluation, selection, epoch, scoring, selected, document)
    manifest["calibration"] = calibrate(images["labels"], images["scores"][scoring], source)
    return Bundle(validate_manifest(manifest, f"the manifest of {record.spec.id}"), trainable, weights_file=snapshot)


def _manifest(record: Any, trained: Any, evaluation: dict[str, Any], selection: str, epoch: int, scoring: str,
              selected: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    options = trained.build_options(record.variant, record.fidelity)
    teacher_files = {"wrn50": options.pop("wrn_weights"), "vmamba": options.pop("vmamba_weights")}
    options["map_sigma"] = evaluation["eval"]["sigma"]  # the smoothing the scores (and threshold) were made with
    identity = record.run_identity
    teachers = {}
    trained_teachers = trained.teachers_of(record.variant)  # the variant's own teachers where it names them
    for name, weights in identity.teacher_weights.items():
        settings = getattr(trained_teachers, name)
        model = TEACHER_MODELS[name].format(tag=trained_teachers.wrn50.tag)
        teachers[name] = {"model": model, "weights": weights, "file": teacher_files[name], "url": settings.url,
                          **({"seed": trained_teachers.init_seed} if weights == RANDOM_INIT else {})}
    return {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "pdd_version": __version__,
        "run": {"id": record.spec.id, "dataset": record.dataset, "variant": record.variant, "arch": record.arch,
                "fidelity": record.fidelity, "seed": record.seed, "demo": record.demo, "epochs": record.epochs,
                "git_commit": record.git_commit, "git_dirty": record.git_dirty,
                "params_sha256": record.params_sha256, "train_fingerprint": identity.train_fingerprint,
                "split_sha256": identity.split_sha256, "evaluated": document["provenance"]["created"],
                # set for weights trained elsewhere (`pdd weights import-official`): who, and each file's sha256
                "weights_source": document["provenance"].get("weights_source")},
        "model": {"arch": record.arch, "fidelity": record.fidelity, "options": options, "scoring": scoring},
        "input": {"image_size": record.image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                  "preprocessing": "pdd.data.images.read_image, RGB, PIL bilinear resize to image_size², "
                                   "/255, ImageNet mean/std",
                  "window": _training_window(record.dataset)},
        "teachers": teachers,
        "teacher_features": evaluation["teacher_features"],
        "selection": {"protocol": selection, "epoch": epoch, "scoring": scoring,
                      "caveat": SELECTION_CAVEAT if selection == "best_of_test" else None},
        "metrics": selected["pooled"],
    }


def _training_window(dataset: str) -> dict[str, Any] | None:
    """The window the dataset's training images were exported with (`DatasetSpec.ct_window`), as it is now."""
    from pdd.data.registry import DATASETS

    name = DATASETS[dataset].ct_window if dataset in DATASETS else None
    if name is None:
        return None
    window = WINDOW_PRESETS[name]
    return {"name": name, "center": window.center, "width": window.width}


def write_bundle(bundle: Bundle, out: str | Path, teachers: dict[str, dict[str, torch.Tensor]] | None = None,
                 params_yaml: str | None = None) -> Path:
    """Write `bundle` into the folder `out` atomically (an existing bundle there is replaced).

    `teachers`: per teacher, the state to store under teachers/<t>.safetensors (`--with-teachers`)."""
    from safetensors.torch import save

    from pdd.data.prepare import atomic_directory

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise PDDError(f"{out} exists and is not a pdd model bundle; choose another --out (nothing was written)")
    manifest = bundle.manifest.model_dump(mode="json")  # a copy: the file list is this folder's
    with atomic_directory(out) as work:
        if bundle.weights_file is not None:
            shutil.copyfile(bundle.weights_file, work / WEIGHTS)
        else:
            save_snapshot(work / WEIGHTS, bundle.trainable, {"bundle": manifest["run"]["id"]})
        for name, state in (teachers or {}).items():
            (work / "teachers").mkdir(exist_ok=True)
            tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state.items()}
            (work / "teachers" / f"{name}.safetensors").write_bytes(save(tensors, metadata={"teacher": name}))
            manifest["teachers"][name]["bundled"] = f"teachers/{name}.safetensors"
        if params_yaml is not None:
            atomic_write_text(work / PARAMS, params_yaml)
        manifest["files"] = None
        atomic_write_text(work / CARD, model_card(validate_manifest(manifest, str(out / MANIFEST))))
        manifest["files"] = {path.relative_to(work).as_posix(): sha256_file(path)
                             for path in sorted(work.rglob("*")) if path.is_file()}
        validate_manifest(manifest, str(out / MANIFEST))
        atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        _shareable(work)
    return out


def _shareable(folder: Path) -> None:
    """Temporary files are private (0600); a bundle is meant to be copied and shared: umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def model_card(manifest: Manifest) -> str:
    """`model.md`: what a person handed the folder needs to know before trusting a score."""
    run, selection, calibration = manifest.run, manifest.selection, manifest.calibration

    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}"

    def teacher(name: str, entry: Any) -> str:
        if entry.weights == RANDOM_INIT:
            where = f"seed {entry.seed}"
        else:
            where = f"sha256 {entry.weights}, " + (f"bundled as {entry.bundled}" if entry.bundled
                                                   else f"file {entry.file} (from {entry.url})")
        return f"{name}: {entry.model}, {'random-init' if entry.weights == RANDOM_INIT else 'pretrained'} ({where})"

    teachers = "; ".join(teacher(name, entry) for name, entry in manifest.teachers.items())
    metrics, window, size = manifest.metrics, manifest.input.window, manifest.input.image_size
    lines = [
        f"# PDD model: {run.dataset} / {run.variant} ({run.fidelity} fidelity), seed {run.seed}", "",
        *(f"> **Warning:** {note}." for note in Bundle(manifest, {}).warnings),
        "",
        f"- Architecture: {manifest.model.arch}, scoring `{manifest.model.scoring}`, input {size}×{size} RGB "
        "(ImageNet normalisation)"
        + (f"; DICOM/NIfTI input is shown in the {window.name} window (C {window.center:g}, W {window.width:g}) the "
           "training images used, unless `--window` says otherwise" if window is not None else ""),
        f"- Weights: epoch {selection.epoch} of {run.epochs}, selected by `{selection.protocol}`",
        f"- Test metrics of that epoch: image AUROC {percent(metrics.get('image_AUROC'))}, AP "
        f"{percent(metrics.get('image_AP'))}, F1-max {percent(metrics.get('image_F1max'))} (%)",
        f"- Threshold: {calibration.threshold:.6g} ({calibration.threshold_rule}); normal test scores: mean "
        f"{calibration.normal_scores.mean:.6g}, std {calibration.normal_scores.std:.6g}, p99 "
        f"{calibration.normal_scores.p99:.6g}",
        f"- Calibrated on: {calibration.source}",
        f"- Teachers: {teachers}",
        f"- Provenance: git {run.git_commit}{' (dirty)' if run.git_dirty else ''}, params sha256 "
        f"{run.params_sha256[:12]}…, train fingerprint {run.train_fingerprint[:12]}…, split sha256 "
        f"{run.split_sha256[:12]}…",
        "",
    ]
    if selection.caveat:
        lines += [f"**Caveat:** {selection.caveat}.", ""]
    lines += ["## Use", "", "```", "pdd predict --model THIS_FOLDER scans/ --out predictions/", "```", "",
              "Images (PNG/JPEG/...), DICOM files or series folders and NIfTI volumes are accepted; see "
              "`pdd predict --help`. Scores are only comparable to the threshold for images like the training "
              "data (same modality, view and preprocessing).", ""]
    return "\n".join(lines)


def params_yaml_of(record: Any) -> str:
    return yaml.safe_dump(record.params, sort_keys=False, allow_unicode=True)
