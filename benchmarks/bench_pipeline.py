"""End-to-end pipeline times: rendering every table and figure, and (with --demo) the whole demo.

Rendering runs the `pdd tables` and `pdd figures` commands, as the workflow does, on the fixed
results set of the reporting tests. The demo runs `snakemake --cores 2 --config profile=demo` in a
scratch copy of the working tree (so it never touches this checkout's results) with a cold cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Ratio, Settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_RESULTS = ROOT / "tests" / "reporting" / "fixtures" / "results"
RENDER_LIMIT_S, DEMO_LIMIT_S = 30, 15 * 60
# What the demo needs from the tree; generated outputs are left behind.
SKIPPED = shutil.ignore_patterns(".venv", ".git", "results", "data", "cache", "paper_tables", ".snakemake", "__pycache__")


def timed(command: list[str], cwd: Path, timeout: float) -> float:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True,
                               timeout=timeout, check=False)
    if completed.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-4000:]}")
    return time.perf_counter() - started


def render_seconds() -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "tests" / "reporting"))
    from example_maps import write_example_maps  # the reporting tests' generated anomaly maps

    pdd = [sys.executable, "-m", "pdd"]
    with tempfile.TemporaryDirectory(prefix="pdd-bench-render-") as scratch:
        results, out = Path(scratch) / "results", str(Path(scratch) / "out")
        shutil.copytree(FIXTURE_RESULTS, results)
        write_example_maps(results)
        common = ["--params", str(ROOT / "params.yaml"), "--results", str(results), "--out", out]
        return {"tables_s": timed([*pdd, "tables", *common], ROOT, 600),
                "figures_s": timed([*pdd, "figures", *common], ROOT, 600)}


def demo_seconds(cores: int = 2) -> float:
    with tempfile.TemporaryDirectory(prefix="pdd-bench-demo-") as scratch:
        tree = Path(scratch) / "pdd"
        shutil.copytree(ROOT, tree, ignore=SKIPPED)
        snakemake = str(Path(sys.executable).parent / "snakemake")
        return timed([snakemake, "--cores", str(cores), "--config", "profile=demo"], tree, 3 * DEMO_LIMIT_S)


def run(settings: Settings, demo: bool = False) -> dict:
    report: dict = render_seconds()
    render = report["tables_s"] + report["figures_s"]
    ratios = [Ratio("render every table and figure from existing results", render, f"<= {RENDER_LIMIT_S}", unit="s",
                    detail=f"tables {report['tables_s']:.1f} s, figures {report['figures_s']:.1f} s (CLI, incl. start-up)")]
    if demo:
        report["demo_s"] = demo_seconds()
        ratios.append(Ratio("demo end to end (snakemake --cores 2, profile demo)", report["demo_s"] / 60,
                            f"<= {DEMO_LIMIT_S // 60}", unit="min", detail="scratch copy of the tree, cold cache"))
    report["ratios"] = ratios
    return report
