import logging
import random

import numpy as np
import pytest
import torch

from pdd.engine.checkpoint import CheckpointManager, capture_rng_state, load_checkpoint, restore_rng_state
from pdd.engine.schedule import build_optimizer, build_scheduler
from pdd.errors import PDDError


def _tiny_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))


def _training_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = _tiny_model()
    optimizer = build_optimizer(model.parameters())
    scheduler = build_scheduler(optimizer)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
    }


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draws()
    manager.save({"rng": capture_rng_state()}, epoch=1)
    expected = _draws()
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    restore_rng_state(manager.load_latest()["rng"])
    assert _draws() == expected


def test_round_trip_restores_model_optimizer_and_scheduler(tmp_path):
    state = _training_state()
    CheckpointManager(tmp_path).save(state, epoch=3)
    loaded = CheckpointManager(tmp_path).load_latest()
    assert loaded["epoch"] == 3
    for key, tensor in state["model"].items():
        assert torch.equal(loaded["model"][key], tensor)
    assert loaded["scheduler"]["last_epoch"] == state["scheduler"]["last_epoch"]
    restored = torch.optim.Adam(_tiny_model().parameters())
    restored.load_state_dict(loaded["optimizer"])
    assert restored.param_groups[0]["betas"] == (0.5, 0.999)
    first_moment = loaded["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], first_moment)


def test_keeps_last_and_every_nth_epoch(tmp_path):
    manager = CheckpointManager(tmp_path, keep_every=2)
    for epoch in range(1, 6):
        manager.save({"value": torch.tensor(epoch)}, epoch=epoch, final=epoch == 5)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch_002.pt", "epoch_004.pt", "epoch_005.pt", "last.pt"]
    assert [p.name for p in manager.candidates()] == ["last.pt", "epoch_005.pt", "epoch_004.pt", "epoch_002.pt"]
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files may be left behind"


def test_truncated_last_falls_back_to_previous_snapshot(tmp_path, caplog):
    manager = CheckpointManager(tmp_path, keep_every=2)
    for epoch in (1, 2, 3):
        manager.save({"value": torch.tensor(epoch)}, epoch=epoch)
    data = manager.last_path.read_bytes()
    manager.last_path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        loaded = manager.load_latest()
    assert loaded["epoch"] == 2 and int(loaded["value"]) == 2
    assert "last.pt" in caplog.text


def test_all_checkpoints_corrupt_is_a_clear_error(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save({"value": torch.tensor(1)}, epoch=1)
    manager.last_path.write_bytes(b"not a checkpoint")
    with pytest.raises(PDDError, match="delete that directory"):
        manager.load_latest()


def test_no_checkpoint_yet_is_none(tmp_path):
    assert CheckpointManager(tmp_path / "absent").load_latest() is None


class _Arbitrary:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "epoch": 1, "payload": _Arbitrary()}, path)
    with pytest.raises(PDDError, match="unreadable"):
        load_checkpoint(path)
