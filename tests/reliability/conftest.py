"""Shared set-up of the reliability tests: `pdd` subprocesses with injected faults, a tiny workspace,
a local HTTP server. Every test here is marked `reliability` (select with `-m reliability`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.processes import run_pdd

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS_DIR = Path(__file__).resolve().parent / "faults"  # sitecustomize.py: the fault injector
PDD = (sys.executable, "-m", "pdd")
BIN = Path(sys.executable).parent


THREADS = 2


def pdd_env(faults: list[dict] | None = None, marker: Path | None = None,
            variables: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a subprocess, with `faults` armed (see faults/sitecustomize.py) and `variables` set
    (None: removed)."""
    # CPU results are bitwise reproducible only at one thread count; Snakemake jobs get theirs from --set-threads
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": str(THREADS)}
    for name, value in (variables or {}).items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    if faults:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS_DIR), env.get("PYTHONPATH")]))
        env["PDD_TEST_FAULTS"] = json.dumps(faults)
        if marker is not None:
            env["PDD_TEST_FAULT_MARKER"] = str(marker)
    return env


class Processes:
    """Runs `pdd` (or any command) in fresh processes, optionally with faults armed (the `procs` fixture)."""

    threads = THREADS

    @staticmethod
    def run(command: list[str], faults: list[dict] | None = None, cwd: Path = REPO_ROOT,
            timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=cwd, env=pdd_env(faults), capture_output=True, text=True, timeout=timeout)

    def run_pdd(self, *args: str, faults: list[dict] | None = None) -> subprocess.CompletedProcess:
        """`pdd ARGS` in a fresh process, as a user or a workflow job runs it: a new interpreter when faults are
        armed (the injector loads at start-up), else a fork of the preloaded server (`tests.processes`)."""
        if faults:
            return self.run([*PDD, *args], faults)
        return run_pdd(list(args), cwd=REPO_ROOT, env=pdd_env())

    @staticmethod
    def start_paused(command: list[str], fault: dict, marker: Path, cwd: Path = REPO_ROOT,
                     timeout: float = 600, variables: dict[str, str | None] | None = None,
                     ) -> tuple[subprocess.Popen, int]:
        """Start `command` and wait until a process in it pauses at `fault`; returns it and the paused pid.

        The paused process may be a child of `command` (a Snakemake job)."""
        marker.unlink(missing_ok=True)
        process = subprocess.Popen(command, cwd=cwd, env=pdd_env([{**fault, "do": "pause"}], marker, variables),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while not marker.exists():
            if process.poll() is not None:
                _, err = process.communicate()
                raise AssertionError(f"{command} ended (rc {process.returncode}) before reaching {fault}:\n"
                                     f"{err[-3000:]}")
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{command} did not reach {fault} in {timeout} s")
            time.sleep(0.1)
        return process, int(marker.read_text())

    def kill_at_fault(self, command: list[str], fault: dict, marker: Path, cwd: Path = REPO_ROOT,
                      timeout: float = 600) -> subprocess.CompletedProcess:
        """Run `command` until a process in it pauses at `fault`, `kill -9` that process, and let `command`
        react to the loss (a Snakemake job failing) before returning it."""
        process, paused = self.start_paused(command, fault, marker, cwd, timeout)
        os.kill(paused, signal.SIGKILL)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.fixture(scope="session")
def procs() -> Processes:
    return Processes()


@dataclass
class Workspace:
    """A tiny synthetic HeadCT at 32x32 and the params overrides that point the demo profile at it."""

    root: Path
    extra: list[str] = field(default_factory=list)

    def overrides(self, *extra: str) -> list[str]:
        return [f"paths.prepared={self.root / 'prepared'}", f"paths.cache={self.root / 'cache'}",
                f"paths.results={self.root / 'results'}", f"paths.raw={self.root / 'raw'}",
                f"paths.tables={self.root / 'tables'}", "data.image_size=32", "data.synthetic.size=32",
                "data.synthetic.n_train=8", "data.synthetic.n_test=4", "train.epochs=2", "train.batch_size=4",
                "train.eval_every=1", "train.keep_snapshots=all", "train.num_workers=0", *self.extra, *extra]

    def params_args(self, *extra: str) -> list[str]:
        return ["--params", str(REPO_ROOT / "params.yaml"), "--profile", "demo",
                *[arg for override in self.overrides(*extra) for arg in ("--set", override)]]

    def train_args(self, run_dir: Path, *extra: str, resume: bool = False) -> list[str]:
        return ["train", *self.params_args(*extra), "--dataset", "headct", "--variant", "full", "--fidelity",
                "code", "--seed", "0", "--out", str(run_dir), "--no-progress", *(["--resume"] if resume else [])]

    def evaluate_args(self, run_dir: Path) -> list[str]:
        return ["evaluate", "--params", str(REPO_ROOT / "params.yaml"), "--run", str(run_dir), "--no-progress"]


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    from pdd.data.synthetic import generate

    workspace = Workspace(tmp_path_factory.mktemp("reliability"))
    generate(workspace.root / "prepared" / "headct", seed=0, n_train=8, n_test_normal=4, n_test_anomalous=4,
             size=32, name="headct")
    return workspace


@pytest.fixture(scope="session")
def baseline_run(workspace, procs) -> Path:
    """One uninterrupted `pdd train` + `pdd evaluate`: what every interrupted run must end up equal to."""
    run_dir = workspace.root / "baseline"
    for args in (workspace.train_args(run_dir), workspace.evaluate_args(run_dir)):
        result = procs.run_pdd(*args)
        assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


