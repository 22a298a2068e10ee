"""Table 1's HeadCT row with the paper's recipe, end to end through the `pdd` CLI: wall times, peak RSS and disk.

    python -m benchmarks.headct_paper_recipe [--raw ../shared/datasets/headct] [--out DIR] [--repo CHECKOUT]
                                             [--epochs 100] [--eval-every 10] [--image-size 256]

Runs, each as its own process (as the workflow does) and timed on its own: `pdd data prepare headct` (the
registry's protocol: 60 train, 40 + 100 test, seed 0, checked against the download's sha256 manifest), `pdd
train` of `full` / `code` / seed 0 with params.yaml's recipe (100 epochs, batch 10, a snapshot every 10, 256²,
the teacher cache on) and random-init teachers (`teachers.pretrained: false`: the timing does not depend on
the weights' values), then `pdd evaluate` of its snapshots. Each command's peak RSS comes from `wait4` (the
process and its children); the disk is what each part leaves under --out. It only calls the CLI, so the same
file measures an older checkout: ``--repo`` runs that checkout's `pdd` (its params.yaml, its code).

Before and after, the `full` training step alone is timed in a fresh process with this checkout's code (as
`--only train` times it: 256², batch 10, settled heap): the machine's speed at the time. A shared machine's speed
drifts by tens of percent between hours (the same step: 2.08 img/s one morning, 3.22 and 1.92 later the same
day), and the wall times below move with it; the training's img/s over the step's says what the run added.

Writes ``<out>/headct_paper_recipe.json`` (commands, seconds, peak RSS, bytes, the load averages, the step's
speed, the commit) and prints a table. On 2 quiet cores the issue's targets are: training + evaluation ≤ 45 min,
evaluation ≤ 3 min.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEADCT_TRAIN_IMAGES = 60  # the registry's split: 60 normal training images


def run_measured(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run `command`, its output to `log`; wall seconds and the peak RSS of it and its children (wait4)."""
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}); see {log}")
    return {"command": command, "wall_s": round(seconds, 1), "peak_rss_bytes": usage.ru_maxrss * 1024,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "log": str(log)}


STEP_PROBE = """
import json
from benchmarks.bench_train import PARAMS_FILE, measure, pdd_step
from pdd.config import load_params
print(json.dumps(measure(pdd_step("engine", 10, 256, load_params(PARAMS_FILE).train), 10, 3)["images_per_s"]))
"""


def step_alone_images_per_s() -> float:
    """img/s of the `full` training step alone (this checkout, 256², batch 10, settled heap), in a fresh process."""
    probe = subprocess.run([sys.executable, "-c", STEP_PROBE], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                           capture_output=True, text=True, check=True)
    return round(float(probe.stdout.strip().splitlines()[-1]), 3)


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def tree_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.headct_paper_recipe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=REPO.parent / "shared" / "datasets" / "headct")
    parser.add_argument("--out", type=Path, default=Path("results/headct_paper_recipe"))
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose `pdd` runs (default: this one)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    repo, out = args.repo.resolve(), args.out.resolve()
    if out.exists():
        shutil.rmtree(out)  # a cold start: no teacher cache, no ready pixels, no run
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(repo)}
    pdd = [sys.executable, "-m", "pdd"]
    run_dir = out / "results" / "headct" / "full" / "code" / "seed0"
    sets = [f"paths.prepared={out / 'prepared'}", f"paths.cache={out / 'cache'}", f"paths.results={out / 'results'}",
            "teachers.pretrained=false", f"train.epochs={args.epochs}", f"train.eval_every={args.eval_every}",
            f"data.image_size={args.image_size}"]
    set_args = [arg for value in sets for arg in ("--set", value)]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    report: dict[str, Any] = {"repo": str(repo), "commit": commit, "settings": sets, "cpus": os.cpu_count(),
                              "load_average_start": _load(), "steps": {}}
    print("the step alone (the machine's speed now) ...", flush=True)
    report["step_alone_images_per_s_start"] = step_alone_images_per_s()
    steps = {
        "prepare": [*pdd, "data", "prepare", "headct", "--raw", str(args.raw.resolve()), "--out",
                    str(out / "prepared" / "headct"), "--seed", "0"],
        "train": [*pdd, "train", "--params", str(repo / "params.yaml"), *set_args, "--dataset", "headct", "--variant",
                  "full", "--fidelity", "code", "--seed", "0", "--out", str(run_dir), "--no-progress"],
        "evaluate": [*pdd, "evaluate", "--params", str(repo / "params.yaml"), "--run", str(run_dir), "--no-progress"],
    }
    for name, command in steps.items():
        print(f"{name}: {' '.join(command)}", flush=True)
        report["steps"][name] = run_measured(command, repo, env, out / f"{name}.log")
        print(f"  {report['steps'][name]['wall_s']:.0f} s, peak RSS "
              f"{report['steps'][name]['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    report["load_average_end"] = _load()
    report["step_alone_images_per_s_end"] = step_alone_images_per_s()
    images = args.epochs * HEADCT_TRAIN_IMAGES
    report["train_images_per_s"] = round(images / report["steps"]["train"]["wall_s"], 3)
    report["disk_bytes"] = {
        "prepared": tree_bytes(out / "prepared"), "teacher_cache": tree_bytes(out / "cache" / "teacher_features"),
        "ready_pixels": tree_bytes(out / "cache" / "pixels"), "run": tree_bytes(run_dir),
        "snapshots": tree_bytes(run_dir / "snapshots"),
    }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    report["image_AUROC_ts_last"] = metrics["metrics"]["ts"]["last"]["pooled"]["image_AUROC"]
    (out / "headct_paper_recipe.json").write_text(json.dumps(report, indent=2) + "\n")

    steps_done = report["steps"]
    total = steps_done["train"]["wall_s"] + steps_done["evaluate"]["wall_s"]
    print(f"\ncommit {commit[:10]} ({repo}), load {report['load_average_start']} -> {report['load_average_end']}")
    print("| part | wall | peak RSS |\n|---|---|---|")
    for name, step in steps_done.items():
        print(f"| {name} | {step['wall_s'] / 60:.1f} min ({step['wall_s']:.0f} s) | "
              f"{step['peak_rss_bytes'] / 2**30:.2f} GiB |")
    print(f"| train + evaluate | {total / 60:.1f} min | |")
    step_speed = (report["step_alone_images_per_s_start"], report["step_alone_images_per_s_end"])
    print(f"the step alone before / after: {step_speed[0]:.2f} / {step_speed[1]:.2f} img/s; training (first epoch and "
          f"checkpoints included) {report['train_images_per_s']:.2f} img/s, "
          f"{report['train_images_per_s'] / (sum(step_speed) / 2):.2f}x their mean")
    print("disk: " + ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in report["disk_bytes"].items()))
    print(f"wrote {out / 'headct_paper_recipe.json'}")


if __name__ == "__main__":
    main()
