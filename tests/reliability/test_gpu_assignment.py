"""One GPU per job: concurrent `pdd train` processes on a machine with several GPUs each take one of their own,
and a killed process gives its GPU back (`pdd.devices`).

The machine's GPUs are mocked (faults/sitecustomize.py, `PDD_TEST_MOCK_GPUS`): torch reports 2 GPUs, so each
process picks and records a GPU index exactly as on such a machine, locks included, and then computes on the CPU.
Processes are paused, not finished, while they hold their GPU: the locks are what is under test.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.reliability

# after run.json is written: the first checkpoint's write, at the end of epoch 1 (its temporary `.last.pt.*.tmp`)
AFTER_RECORD = {"at": "open", "match": ".pt.", "writing": True, "nth": 1}
# just after the GPU is claimed: the run directory's lock is taken next (the GPU's own lock file is opened before)
AFTER_CLAIM = {"at": "open", "match": "third/.lock", "nth": 1}


def test_concurrent_trainings_get_their_own_gpu_and_a_killed_one_frees_its_gpu(workspace, procs, tmp_path):
    variables = {"PDD_TEST_MOCK_GPUS": "2", "PDD_GPU_LOCK_DIR": str(tmp_path / "locks"),
                 "CUDA_VISIBLE_DEVICES": None}  # unset: pdd assigns the GPUs
    processes = {}

    def start(name: str, fault: dict) -> int:
        command = [sys.executable, "-m", "pdd",
                   *workspace.train_args(tmp_path / name, f"paths.cache={tmp_path / name}-cache")]
        processes[name], paused = procs.start_paused(command, fault, tmp_path / f"{name}.paused", variables=variables)
        return paused

    def recorded_gpu(name: str) -> dict:
        return json.loads((tmp_path / name / "run.json").read_text())["gpu"]

    try:
        with ThreadPoolExecutor(2) as pool:  # started together: they race for the GPUs
            paused = dict(zip(("first", "second"), pool.map(start, ("first", "second"), [AFTER_RECORD] * 2)))
        gpus = {name: recorded_gpu(name) for name in paused}
        assert sorted(gpu["gpu"] for gpu in gpus.values()) == [0, 1], gpus
        assert all(gpu["assigned_by"] == "lock" and gpu["visible_gpus"] == 2 for gpu in gpus.values()), gpus
        on_gpu0 = next(name for name, gpu in gpus.items() if gpu["gpu"] == 0)
        os.kill(paused[on_gpu0], signal.SIGKILL)  # a crash: no clean-up runs in it
        processes.pop(on_gpu0).wait(timeout=60)
        start("third", AFTER_CLAIM)  # while the other still holds GPU 1
        processes["third"].kill()
        _, stderr = processes.pop("third").communicate(timeout=60)
        assert "computing on GPU 0 of 2, the first one no other pdd process holds" in stderr, stderr[-2000:]
    finally:
        for process in processes.values():
            process.kill()
            process.communicate()
