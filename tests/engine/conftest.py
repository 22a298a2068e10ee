"""A tiny synthetic HeadCT and helpers to run `pdd train` / `pdd evaluate` on it as users do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import run_pdd

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_M_PDD = (sys.executable, "-m", "pdd")


@dataclass
class EngineWorkspace:
    """The acceptance setting: the demo profile at 64x64, 2 epochs, 8 train / 8 test synthetic images."""

    root: Path
    params_file: Path = REPO_ROOT / "params.yaml"
    size: int = 64

    def overrides(self, *extra: str) -> list[str]:
        """Point a demo run at this workspace; fp32 teacher cache so that losses compare exactly."""
        return [
            f"paths.prepared={self.root / 'prepared'}", f"paths.cache={self.root / 'cache'}",
            f"data.image_size={self.size}", "train.epochs=2", "train.batch_size=4", "train.eval_every=1",
            "train.num_workers=0", "train.cache_fp16=false", "train.keep_snapshots=all", *extra,
        ]

    def params(self, *extra: str):
        from pdd.config import load_params

        return load_params(self.params_file, overrides=self.overrides(*extra), profile="demo")

    def train_args(self, run_dir: Path, *extra: str, variant: str = "full") -> list[str]:
        sets = [arg for override in self.overrides(*extra) for arg in ("--set", override)]
        return ["train", "--params", str(self.params_file), "--profile", "demo", *sets, "--dataset", "headct",
                "--variant", variant, "--fidelity", "code", "--seed", "0", "--out", str(run_dir), "--no-progress"]

    def evaluate_args(self, run_dir: Path) -> list[str]:
        return ["evaluate", "--params", str(self.params_file), "--run", str(run_dir), "--no-progress"]

    @staticmethod
    def run(*args: str, env: dict[str, str] | None = None, launcher: tuple[str, ...] = PYTHON_M_PDD,
            ) -> tuple[subprocess.CompletedProcess, float]:
        """Run `pdd ARGS` in a fresh process (as a user would; `tests.processes`); returns it and its wall time."""
        started = time.perf_counter()
        if launcher == PYTHON_M_PDD:
            process = run_pdd(list(args), cwd=REPO_ROOT, env=env)  # forked from a preloaded interpreter
        else:
            process = subprocess.run([*launcher, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                                     env={**os.environ, **(env or {})}, timeout=900)
        return process, time.perf_counter() - started


@pytest.fixture(scope="session")
def engine_workspace(tmp_path_factory) -> EngineWorkspace:
    from pdd.data.synthetic import generate

    workspace = EngineWorkspace(tmp_path_factory.mktemp("engine"))
    generate(workspace.root / "prepared" / "headct", seed=0, n_train=8, n_test_normal=4, n_test_anomalous=4,
             size=workspace.size, name="headct")
    return workspace


@pytest.fixture(scope="session")
def baseline_run(engine_workspace) -> dict:
    """One uninterrupted `pdd train` + `pdd evaluate` that several tests compare against."""
    run_dir = engine_workspace.root / "baseline"
    trained, train_seconds = engine_workspace.run(*engine_workspace.train_args(run_dir))
    assert trained.returncode == 0, trained.stderr[-3000:]
    evaluated, evaluate_seconds = engine_workspace.run(*engine_workspace.evaluate_args(run_dir))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    return {"run_dir": run_dir, "train_seconds": train_seconds, "evaluate_seconds": evaluate_seconds,
            "stdout": evaluated.stdout}
