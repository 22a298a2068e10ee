"""Simulated test sets and results trees with a known truth, for checking the replication report's statistics.

* `binormal_scores`: normal images ~ N(0, 1), anomalous ones ~ N(mu, 1) with mu = √2·Φ⁻¹(AUROC), so the
  population AUROC is exactly the one asked for (the coverage simulations of docs/reporting.md);
* `write_results`: a results tree as `pdd evaluate` writes it (`eval/epoch_XXX.json` with per-image scores,
  `scores_<scoring>.csv`, a schema-valid `metrics.json` whose selections are made as the engine makes them),
  for any runs and test-set sizes: the report's tests use a small one, `benchmarks/bench_report.py` the
  paper's plan at the real test-set sizes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from pdd.config import RunSpec
from pdd.engine.metrics import compute_metrics
from pdd.engine.rundir import RunDir
from pdd.engine.selection import SELECTION_SCORERS, best_epoch, official_first_image_auroc

TWO_STUDENT_ARCHS = ("full",)  # the architectures with a student-student (ss) scoring


def binormal_scores(rng: np.random.Generator, auroc: float, n_normal: int, n_anomalous: int,
                    size: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores (*size, n)) with population AUROC `auroc`: normal first, then anomalous."""
    labels = np.r_[np.zeros(n_normal, dtype=np.int64), np.ones(n_anomalous, dtype=np.int64)]
    shift = math.sqrt(2) * stats.norm.ppf(auroc)
    return labels, rng.normal(size=(*size, labels.size)) + shift * labels


@dataclass(frozen=True)
class SimulatedTestSet:
    """Per class: (normal, anomalous) image counts; one class named like the dataset for single-class sets."""

    classes: dict[str, tuple[int, int]]

    def images(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(paths, labels, classes) in split order: per class, normal images then anomalous ones."""
        paths, labels, classes = [], [], []
        multi = len(self.classes) > 1
        for cls, (normal, anomalous) in self.classes.items():
            prefix = f"{cls}/" if multi else ""
            for i in range(normal + anomalous):
                label = int(i >= normal)
                paths.append(f"{prefix}test/{'anomaly' if label else 'good'}/{i:05d}.png")
                labels.append(label)
                classes.append(cls)
        return paths, np.array(labels), np.array(classes)


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def write_results(root: Path, runs: Sequence[tuple[RunSpec, str]], test_sets: dict[str, SimulatedTestSet],
                  epochs: Sequence[int], auroc: Callable[[RunSpec, str, int], float], seed: int = 0,
                  demo: bool = False, batch_size: int = 10) -> None:
    """A results tree for `runs` ((spec, arch) pairs) with snapshots scored at `epochs`.

    `auroc(spec, scoring, epoch)` is the population AUROC of a snapshot. Scores share a per-image difficulty
    across the runs of a dataset (models agree on which images are hard) and a per-run one across a run's
    snapshots, so runs on one test set are correlated as real ones are, which paired tests exploit."""
    for spec, arch in runs:
        paths, labels, classes = test_sets[spec.dataset].images()
        scorings = ("ts", "ss") if arch in TWO_STUDENT_ARCHS else ("ts",)
        difficulty = np.random.default_rng(_seed(seed, spec.dataset)).normal(size=labels.size)
        rng = np.random.default_rng(_seed(seed, spec.id))
        latent = 0.5 * difficulty + 0.4 * rng.normal(size=labels.size)
        directory = RunDir(root / spec.relative_dir)
        directory.evaluations.mkdir(parents=True, exist_ok=True)
        per_epoch: dict[int, dict] = {}
        for epoch in epochs:
            scores = {}
            for scoring in scorings:
                shift = math.sqrt(2) * stats.norm.ppf(auroc(spec, scoring, epoch))
                noise = rng.normal(size=labels.size)
                scores[scoring] = (latent + math.sqrt(0.59) * noise + shift * labels).round(6).tolist()  # var 1
            metrics = {s: compute_metrics(labels, values, classes) for s, values in scores.items()}
            images = {"paths": paths, "labels": labels.tolist(), "scores": scores}
            per_epoch[epoch] = {"metrics": metrics, "images": images}
            directory.epoch_evaluation(epoch).write_text(json.dumps(
                {"epoch": epoch, "metrics": metrics, "images": images,
                 "evaluated_with": {"train": "simulated", "evaluate": "simulated"}}))
        last = max(epochs)
        for scoring in scorings:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["path", "class", "label", "score"])
            writer.writerows(zip(paths, classes, labels, per_epoch[last]["images"]["scores"][scoring]))
            directory.scores(scoring).write_text(buffer.getvalue())
        directory.metrics.write_text(json.dumps(_metrics_document(spec, arch, per_epoch, last, demo, batch_size)))


def _metrics_document(spec: RunSpec, arch: str, per_epoch: dict[int, dict], last: int, demo: bool,
                      batch_size: int) -> dict:
    results = {}
    for scoring in per_epoch[last]["metrics"]:
        criteria = {
            "per_image": {e: m["metrics"][scoring]["pooled"]["image_AUROC"] for e, m in per_epoch.items()},
            "official_first_image": {
                e: official_first_image_auroc(m["images"]["labels"], m["images"]["scores"][scoring], batch_size)
                for e, m in per_epoch.items()},
        }
        by = {}
        for scorer in SELECTION_SCORERS:
            epoch = best_epoch(criteria[scorer])
            by[scorer] = {"epoch": epoch, **per_epoch[epoch]["metrics"][scoring], "selected_by": scorer,
                          "selection_AUROC": criteria[scorer][epoch]}
        results[scoring] = {"last": {"epoch": last, **per_epoch[last]["metrics"][scoring]},
                            "best_of_test": by["per_image"], "best_of_test_by": by}
    return {
        "schema_version": 1,
        "run": {"dataset": spec.dataset, "variant": spec.variant, "arch": arch, "fidelity": spec.fidelity,
                "seed": spec.seed, "profile": "simulated", "image_size": 256, "epochs": last, "demo": demo},
        "metrics": results,
        "provenance": {"git_commit": "simulated", "git_dirty": False, "params_sha256": "0" * 64,
                       "split_sha256": "1" * 64, "teacher_weights": {"vmamba": "simulated", "wrn50": "simulated"},
                       "packages": {}, "device": "cpu", "wall_time_s": 0.0, "created": "2026-01-01T00:00:00+00:00",
                       "snapshots_scored": sorted(per_epoch)},
    }
