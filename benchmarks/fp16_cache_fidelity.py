"""What storing teacher features in fp16 (`train.cache_fp16: true`) changes, measured (docs/model.md).

    python -m benchmarks.fp16_cache_fidelity [--headct RAW_DIR] [--size 128] [--epochs 3] [--out FILE]

1. First step, real-size `full`/`code` model (random-init teachers, 256², batch 4 of HeadCT images when
   `--headct` is given, else of noise): relative deviation ||x16 - x32|| / ||x32|| of the fused targets and the
   students (train mode) and of the eval-mode anomaly maps, when the same features are rounded to fp16.
2. AUROC of the demo (synthetic HeadCT, 64², 2 epochs) and, with `--headct`, of a short real HeadCT run
   (`--size`, `--epochs`), trained and evaluated once with an fp32 and once with an fp16 cache.

Writes one JSON document (stdout, and `--out`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def first_step_deviation(images: torch.Tensor) -> dict[str, float]:
    from pdd.models import build_pdd

    torch.manual_seed(0)
    model = build_pdd("full", "code")
    with torch.no_grad():
        exact = model.teacher_features(images)
        rounded = {name: value.half().float() for name, value in exact.items()}
        model.train()
        a, b = model.distill(rounded), model.distill(exact)
        students = [relative(x, y) for path in a.students for x, y in zip(a.students[path], b.students[path])]
        model.eval()
        map16, score16 = model.anomaly_map(None, "ts", features=rounded)
        map32, score32 = model.anomaly_map(None, "ts", features=exact)
    return {
        "features_max": max(relative(rounded[k], exact[k]) for k in exact),
        "targets_max": max(relative(x, y) for x, y in zip(a.targets, b.targets)),
        "students_min": min(students), "students_max": max(students),
        "map": relative(map16, map32), "score_max_abs": float((score16 - score32).abs().max()),
    }


def headct_images(raw: Path, count: int = 4) -> torch.Tensor:
    from PIL import Image

    from pdd.data.dataset import IMAGENET_MEAN, IMAGENET_STD

    files = sorted((raw / "head_ct").rglob("*.png"))[:count]
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    tensors = []
    for path in files:
        image = Image.open(path).convert("RGB").resize((256, 256), Image.BILINEAR)
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(256, 256, 3)
        tensors.append((pixels.permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(tensors)


def train_and_evaluate(prepared: Path, work: Path, overrides: list[str]) -> dict[str, dict[str, float]]:
    """AUROC of one `full`/`code` run per cache dtype on the prepared HeadCT at `prepared`."""
    from pdd.config import RunSpec, load_params
    from pdd.engine import evaluate_run, train_run

    spec = RunSpec("headct", "full", "code", 0)
    out = {}
    for fp16 in (False, True):
        sets = [f"paths.prepared={prepared.parent}", f"paths.cache={work / 'cache'}", "teachers.pretrained=false",
                "train.num_workers=0", "train.keep_snapshots=all", f"train.cache_fp16={str(fp16).lower()}",
                *overrides]
        params = load_params(REPO / "params.yaml", overrides=sets)
        run_dir = work / ("fp16" if fp16 else "fp32")
        started = time.perf_counter()
        train_run(params, spec, run_dir, params_file=REPO / "params.yaml", overrides=sets, progress=False)
        document = evaluate_run(run_dir, REPO / "params.yaml", progress=False)
        out["fp16" if fp16 else "fp32"] = {
            f"{scoring}_{selection}_AUROC": results[selection]["pooled"]["image_AUROC"]
            for scoring, results in document["metrics"].items() for selection in ("last", "best_of_test")}
        out["fp16" if fp16 else "fp32"]["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headct", type=Path, default=None, help="raw HeadCT (labels.csv, head_ct/)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from pdd.data.synthetic import generate

    images = headct_images(args.headct) if args.headct else torch.randn(4, 3, 256, 256)
    report = {"threads": torch.get_num_threads(), "first_step": first_step_deviation(images),
              "first_step_images": "HeadCT" if args.headct else "noise"}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        generate(work / "demo" / "headct", seed=0, n_train=8, n_test_normal=4, n_test_anomalous=4, size=64,
                 name="headct")
        demo = ["data.image_size=64", "train.epochs=2", "train.batch_size=4", "train.eval_every=1",
                "train.t_max=2", "eval.batch_size=4"]
        report["demo"] = train_and_evaluate(work / "demo" / "headct", work / "demo-runs", demo)
        if args.headct:
            from pdd.data.registry import DATASETS

            DATASETS["headct"].prepare(args.headct, work / "real" / "headct", seed=0)
            real = [f"data.image_size={args.size}", f"train.epochs={args.epochs}", "train.eval_every=1",
                    "eval.save_maps=0"]
            report["headct"] = {"image_size": args.size, "epochs": args.epochs,
                                **train_and_evaluate(work / "real" / "headct", work / "real-runs", real)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
