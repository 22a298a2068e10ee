"""Fault injection for the subprocesses of the reliability tests, loaded at interpreter start-up.

A test puts this folder first on PYTHONPATH and lists faults in ``$PDD_TEST_FAULTS`` (JSON). They
fire from a `sys.addaudithook` hook, at the operating-system boundary (a file opened, a file
renamed), so the code under test runs unmodified. Each fault is a dict:

* ``at``: ``"open"`` (a file opened; ``"writing": true`` counts only opens for writing) or
  ``"replace"`` (a rename onto the path: the temporary file is complete, the final name not yet);
* ``match``: a substring of the path; ``nth``: which matching event fires (1 = the first);
* ``do``: ``"pause"`` writes this process id to ``$PDD_TEST_FAULT_MARKER`` and sleeps, so the test
  can kill -9 the process exactly there; ``"enospc"`` makes that event and every later matching one
  fail with ENOSPC, as a disk that stays full would; ``"exit"`` ends the process there at once with
  ``code`` (``os._exit``: no cleanup, no finally blocks, as a killed job).

``$PDD_TEST_MOCK_GPUS=N`` pretends N GPUs are visible, for the choice of a GPU only: `torch.cuda.device_count()`
answers N, and `pdd.devices.cuda_device` (the torch device of GPU index i) answers the CPU, so the process picks
and records a GPU index as on a machine with N GPUs (locks included) and then computes on the CPU. Nothing else
of CUDA is mocked (`torch.cuda.is_available()` stays False).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time

_FAULTS = json.loads(os.environ.get("PDD_TEST_FAULTS") or "[]")
_SEEN = [0] * len(_FAULTS)


def _pause() -> None:
    marker = os.environ["PDD_TEST_FAULT_MARKER"]
    with open(marker + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.rename(marker + ".tmp", marker)
    while True:
        time.sleep(60)


def _writing(mode: object, flags: object) -> bool:
    if isinstance(mode, str):
        return any(letter in mode for letter in "wax+")
    return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR))


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        path, at, writing = args[0], "open", _writing(args[1], args[2])
    elif event == "os.rename":
        path, at, writing = args[1], "replace", True
    else:
        return
    if not isinstance(path, (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(path)
    for index, fault in enumerate(_FAULTS):
        if fault["at"] != at or fault["match"] not in path or (fault.get("writing") and not writing):
            continue
        _SEEN[index] += 1
        if _SEEN[index] == fault["nth"] and fault["do"] == "pause":
            _pause()
        if _SEEN[index] == fault["nth"] and fault["do"] == "exit":
            os._exit(fault["code"])
        if _SEEN[index] >= fault["nth"] and fault["do"] == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


if _FAULTS:
    sys.addaudithook(_hook)

if os.environ.get("PDD_TEST_MOCK_GPUS"):
    import torch

    import pdd.devices

    torch.cuda.device_count = lambda: int(os.environ["PDD_TEST_MOCK_GPUS"])
    pdd.devices.cuda_device = lambda index: torch.device("cpu")
