"""A disk that fills up during a checkpoint or results write: the kernel's own ENOSPC (writes go to
/dev/full), a clear error, the previous file intact, and the write succeeds once space is back.
The end-to-end version (a `pdd train` that hits a full disk, then resumes) is in test_crash_resume.py."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

import pdd.io
from pdd.engine.checkpoint import load_checkpoint, save_checkpoint
from pdd.models.state import load_snapshot, save_snapshot
from pdd.errors import PDDError
from pdd.io import atomic_write_json

pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")]


@pytest.fixture
def disk_full_for(monkeypatch):
    """`disk_full_for.names` lists file names whose atomic writes land on /dev/full (every write: ENOSPC)."""
    real_mkstemp = tempfile.mkstemp

    def mkstemp(prefix: str = "", **kwargs):
        fd, name = real_mkstemp(prefix=prefix, **kwargs)
        if any(prefix == f".{target}." for target in state.names):
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)
            fd = os.open(name, os.O_WRONLY)
        return fd, name

    class state:
        names: set[str] = set()

    monkeypatch.setattr(pdd.io.tempfile, "mkstemp", mkstemp)
    return state


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["checkpoint", "snapshot"])
def test_a_training_write_on_a_full_disk_keeps_the_previous_file(tmp_path, disk_full_for, kind):
    if kind == "checkpoint":
        path = tmp_path / "last.pt"

        def write(weights, epoch):
            save_checkpoint(path, {"weights": weights}, epoch=epoch)

        def read():
            return load_checkpoint(path)["weights"]
    else:
        path = tmp_path / "epoch_001.safetensors"

        def write(weights, epoch):
            save_snapshot(path, {"weights": weights}, {"epoch": str(epoch)})

        def read():
            return load_snapshot(path)[0]["weights"]
    write(torch.arange(1000.0), 1)
    before = path.read_bytes()

    disk_full_for.names = {path.name}
    with pytest.raises(PDDError, match=rf"no space left on the device while writing .*{path.name}.*previous content"):
        write(torch.arange(1000.0) * 2, 2)
    assert path.read_bytes() == before and torch.equal(read(), torch.arange(1000.0))
    assert _leftovers(tmp_path) == []

    disk_full_for.names = set()  # space is back
    write(torch.arange(1000.0) * 2, 2)
    assert torch.equal(read(), torch.arange(1000.0) * 2)


def test_results_write_on_a_full_disk_keeps_the_previous_file(tmp_path, disk_full_for):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"value": 1})
    disk_full_for.names = {"metrics.json"}
    with pytest.raises(PDDError, match="no space left"):
        atomic_write_json(target, {"value": 2})
    assert json.loads(target.read_text()) == {"value": 1} and _leftovers(tmp_path) == []
    disk_full_for.names = set()
    atomic_write_json(target, {"value": 2})
    assert json.loads(target.read_text()) == {"value": 2}
