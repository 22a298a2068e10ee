"""`pdd.devices`: which device a process computes on, checked against the visible GPUs (mocked counts: no GPU
here; nothing is computed on them). tests/reliability/test_gpu_assignment.py runs the same choice across
processes."""

from __future__ import annotations

import logging

import pytest
import torch

from pdd import devices
from pdd.errors import PDDError


@pytest.fixture
def gpus(monkeypatch, tmp_path):
    """Pretend `count` GPUs are visible (set `.count`); records `torch.cuda.set_device` calls."""

    class Machine:
        def __init__(self) -> None:
            self.count, self.current = 2, []

    machine = Machine()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: machine.count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: machine.count > 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: machine.current.append(torch.device(device)))
    monkeypatch.setenv(devices.LOCK_DIR_VARIABLE, str(tmp_path / "locks"))
    monkeypatch.delenv(devices.VISIBLE, raising=False)
    return machine


def test_an_index_beyond_the_visible_gpus_is_an_error_that_names_cuda_visible_devices(gpus, monkeypatch):
    monkeypatch.setenv(devices.VISIBLE, "2,3")
    with pytest.raises(PDDError, match=r"sees 2 GPU\(s\), numbered 0 to 1 \(CUDA_VISIBLE_DEVICES='2,3'"):
        devices.parse_device("cuda:2")
    assert devices.parse_device("cuda:1") == torch.device("cuda", 1)
    gpus.count = 0
    with pytest.raises(PDDError, match="no CUDA GPU is visible.*use --device cpu"):
        devices.parse_device("cuda")
    assert devices.parse_device("auto") == torch.device("cpu")
    with pytest.raises(PDDError, match="use auto, cpu, cuda or cuda:N"):
        devices.parse_device("gpu1")


def test_predict_checks_its_device_and_makes_it_current(gpus):
    from pdd.inference.predictor import resolve_device

    gpus.count = 1
    with pytest.raises(PDDError, match="sees 1 GPU"):
        resolve_device("cuda:1")
    gpus.count = 2
    assert resolve_device("cuda:1") == torch.device("cuda", 1) and gpus.current[-1] == torch.device("cuda", 1)


def test_each_claim_gets_a_free_gpu_then_shares_the_least_shared(gpus, caplog):
    with devices.claim_device() as first, devices.claim_device() as second:
        assert (first.gpu, first.assigned_by, second.gpu, second.assigned_by) == (0, "lock", 1, "lock")
        assert first.device == torch.device("cuda", 0) and gpus.current == [first.device, second.device]
        with caplog.at_level(logging.WARNING), devices.claim_device() as third:
            assert (third.gpu, third.assigned_by) == (0, "lock, shared")
        assert "all 2 GPUs are held by other pdd processes" in caplog.text
    with devices.claim_device() as again:  # released on the way out
        assert (again.gpu, again.assigned_by) == (0, "lock")
        assert again.record()["lock"].endswith("gpu0.lock") and again.record()["visible_gpus"] == 2


def test_cuda_visible_devices_an_explicit_index_and_torchrun_are_obeyed(gpus, monkeypatch):
    with devices.claim_device("cuda:1") as explicit:
        assert (explicit.gpu, explicit.assigned_by, explicit.lock) == (1, "--device", None)
    with devices.claim_device(local_rank=1, world_size=2) as rank:
        assert (rank.device, rank.assigned_by) == (torch.device("cuda", 1), "torchrun LOCAL_RANK")
    monkeypatch.setenv(devices.VISIBLE, "3")  # SLURM's (or the user's) choice
    gpus.count = 1
    with devices.claim_device() as slurm:
        assert (slurm.gpu, slurm.assigned_by, slurm.lock) == (0, devices.VISIBLE, None)


def test_more_torchrun_ranks_than_gpus_says_what_to_run_instead(gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(PDDError, match=r"torchrun started 4 processes .* only 2 GPU\(s\) .* --nproc_per_node=2"):
        with devices.claim_device(local_rank=2, world_size=4):
            pass


def test_tf32_is_set_explicitly_and_reported_as_torch_sees_it():
    try:
        assert devices.set_tf32(True) == {"tf32": True, "matmul": "tf32", "convolution": "tf32"}
        assert devices.set_tf32(False) == {"tf32": False, "matmul": "ieee", "convolution": "ieee"}
    finally:
        devices.set_tf32(False)
