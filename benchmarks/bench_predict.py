"""`pdd predict` vs `pdd evaluate` on the same test images: a model in use must not be slower than in evaluation.

Both are timed as users run them (the CLI in a fresh process, model build included) on one synthetic test
set, with the teacher cache off so that evaluation, like prediction on new scans, computes the teachers.
Predict also writes a heatmap overlay per image and the gallery; evaluate computes the metrics.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Ratio, Settings

REPO = Path(__file__).resolve().parents[1]


def _pdd(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pdd", *args], check=True, cwd=REPO, capture_output=True, text=True)
    return time.perf_counter() - started


def run(settings: Settings) -> dict:
    from pdd.data.synthetic import generate

    size, n_test = settings.image_size, (4 if settings.quick else 16)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as scratch:
        root = Path(scratch)
        generate(root / "prepared" / "headct", seed=0, n_train=2, n_test_normal=n_test, n_test_anomalous=n_test,
                 size=size, name="headct")
        sets = [f"paths.prepared={root / 'prepared'}", f"paths.cache={root / 'cache'}", f"data.image_size={size}",
                "train.epochs=1", "train.eval_every=1", "train.batch_size=2", "train.num_workers=0",
                "data.datasets.headct.teacher_cache=false", f"eval.batch_size={8}"]
        args = ["--params", str(REPO / "params.yaml"), "--profile", "demo", *(a for s in sets for a in ("--set", s))]
        run_dir = root / "run"
        _pdd("train", *args, "--dataset", "headct", "--variant", "full", "--seed", "0", "--out", str(run_dir),
             "--no-progress")
        images = 2 * n_test
        _pdd("evaluate", "--params", str(REPO / "params.yaml"), "--run", str(run_dir), "--no-progress")  # warm-up
        _pdd("export", "--run", str(run_dir), "--out", str(root / "model"))
        evaluate_times, predict_times = [], []
        for index in range(settings.repeats):  # interleaved: a load change on a shared CPU hits both sides
            evaluate_times.append(_pdd("evaluate", "--params", str(REPO / "params.yaml"), "--run", str(run_dir),
                                       "--no-progress"))
            predict_times.append(_pdd("predict", "--model", str(root / "model"),
                                      str(root / "prepared" / "headct" / "test"), "--out", str(root / f"out{index}"),
                                      "--batch-size", "8", "--no-progress"))
        evaluate_s, predict_s = statistics.median(evaluate_times), statistics.median(predict_times)
    report = {"images": images, "size": size, "evaluate_s": evaluate_s, "predict_s": predict_s,
              "evaluate_images_per_s": images / evaluate_s, "predict_images_per_s": images / predict_s}
    report["ratios"] = [Ratio(
        f"pdd predict vs pdd evaluate, images/s ({size}², {images} images, CLI wall time)", evaluate_s / predict_s,
        target=">= 0.9", detail=f"predict {report['predict_images_per_s']:.2f} img/s, evaluate "
                                f"{report['evaluate_images_per_s']:.2f} img/s (teacher cache off)")]
    return report
