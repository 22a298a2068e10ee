"""`pdd` commands in fresh processes forked from a server that has already imported torch, timm and pdd.

A command-line test wants what a user gets: a new process with its own stdout, stderr and exit code, and
nothing left over from the test process. A new interpreter spends ~4-5 s importing torch and timm (which
pulls in torch._dynamo through torchvision) before pdd does anything, and the suite runs ~100 commands.
multiprocessing's forkserver imports them once; each command is then a fork of it, a process as fresh as
`python -m pdd` except for those modules being loaded already.

What only takes effect when an interpreter starts cannot be given to a fork: a fault injector on
PYTHONPATH (sitecustomize), CUDA_VISIBLE_DEVICES, a launcher such as torchrun. Commands that need one run as
real subprocesses (`run_pdd` decides). OMP_NUM_THREADS is the exception: the fork sets torch's thread count
to it (`torch.set_num_threads`, the same count of the same pool, so the same CPU numerics; the reliability
tests compare forked and fresh runs bit for bit).
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Mapping

# read when an interpreter (or torch, or CUDA) starts: a fork would silently ignore them
STARTUP_ENVIRONMENT = ("PYTHONPATH", "PYTHONHASHSEED", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "TRITON_INTERPRET")
PRELOAD = ("pdd.cli", "pdd.config.cli", "pdd.data.cli", "pdd.engine.cli", "pdd.engine.train", "pdd.engine.evaluate",
           "pdd.inference.cli", "pdd.models.cli", "pdd.models.torch_model", "pdd.reporting.cli", "timm")


def run_pdd(args: list[str], cwd: Path, env: Mapping[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m pdd ARGS` in a fresh process: forked from the preloaded server unless `env` sets a variable
    that only a new interpreter would read."""
    env = dict(env or {})
    if any(os.environ.get(name) != env[name] for name in STARTUP_ENVIRONMENT if name in env):
        return subprocess.run([sys.executable, "-m", "pdd", *args], capture_output=True, text=True, cwd=cwd,
                              env={**os.environ, **env}, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="pdd-fork-") as scratch:
        stdout, stderr = Path(scratch) / "stdout", Path(scratch) / "stderr"
        process = _server().Process(target=_run_cli, args=(list(args), str(stdout), str(stderr), str(cwd), env))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["pdd", *args], timeout, stdout.read_text(), stderr.read_text())
        return subprocess.CompletedProcess(["pdd", *args], process.exitcode, stdout.read_text(), stderr.read_text())


@functools.cache
def _server() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def _run_cli(args: list[str], stdout: str, stderr: str, cwd: str, env: dict[str, str]) -> None:
    """The forked process: its own working directory, environment and output files, then `pdd.cli.main`."""
    os.chdir(cwd)
    os.environ.update(env)
    if "OMP_NUM_THREADS" in env:
        import torch

        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    for fd, path in ((1, stdout), (2, stderr)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout, sys.stderr = (open(fd, "w", closefd=False, encoding="utf-8") for fd in (1, 2))
    from pdd.cli import main

    try:
        code = main(args)
    except SystemExit as exc:  # argparse's and the CLI's own exits
        code = exc.code
    except BaseException:  # an unexpected error: its traceback on stderr and exit 1, as an interpreter does
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # what an interpreter runs on its way out; os._exit below would skip it
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
