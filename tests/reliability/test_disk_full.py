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
from pdd.engine.checkpoint import CheckpointManager
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


def test_checkpoint_write_on_a_full_disk_keeps_the_previous_one(tmp_path, disk_full_for):
    manager = CheckpointManager(tmp_path, keep_every=1)
    manager.save({"weights": torch.arange(1000.0)}, epoch=1)
    before = manager.last_path.read_bytes()

    disk_full_for.names = {"last.pt"}
    with pytest.raises(PDDError, match=r"no space left on the device while writing .*last\.pt.*previous content"):
        manager.save({"weights": torch.arange(1000.0) * 2}, epoch=2)
    assert manager.last_path.read_bytes() == before and manager.load_latest()["epoch"] == 1
    assert not (tmp_path / "epoch_002.pt").exists() and _leftovers(tmp_path) == []

    disk_full_for.names = set()  # space is back
    manager.save({"weights": torch.arange(1000.0) * 2}, epoch=2)
    assert manager.load_latest()["epoch"] == 2


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
