import pickle
import random

import numpy as np
import pytest
import torch

from pdd.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from pdd.engine.schedule import build_optimizer, build_scheduler
from pdd.errors import PDDError
from pdd.models.state import load_snapshot, save_snapshot


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
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draws()
    save_checkpoint(tmp_path / "last.pt", {"rng": capture_rng_state()}, epoch=1)
    expected = _draws()
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    restore_rng_state(load_checkpoint(tmp_path / "last.pt")["rng"])
    assert _draws() == expected


def test_round_trip_restores_model_optimizer_and_scheduler(tmp_path):
    state = _training_state()
    save_checkpoint(tmp_path / "last.pt", state, epoch=3)
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["epoch"] == 3
    for key, tensor in state["model"].items():
        assert torch.equal(loaded["model"][key], tensor)
    assert loaded["scheduler"]["last_epoch"] == state["scheduler"]["last_epoch"]
    restored = torch.optim.Adam(_tiny_model().parameters())
    restored.load_state_dict(loaded["optimizer"])
    assert restored.param_groups[0]["betas"] == (0.5, 0.999)
    first_moment = loaded["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], first_moment)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files may be left behind"


def test_a_truncated_checkpoint_is_a_clear_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"value": torch.tensor(1)}, epoch=1)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(PDDError, match="unreadable.*--restart-if-changed"):
        load_checkpoint(path)


class _Arbitrary:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 2, "epoch": 1, "payload": _Arbitrary()}, path)
    with pytest.raises(PDDError, match="unreadable"):
        load_checkpoint(path)


def test_a_snapshot_round_trips_without_pickle(tmp_path, monkeypatch):
    model = _tiny_model()
    model[0].weight.data.normal_()
    state = {**model.state_dict(), "alias.weight": model[0].weight}  # shared storage, as shared students have
    path = tmp_path / "epoch_001.safetensors"
    save_snapshot(path, state, {"run": "headct/full/code/seed0", "epoch": "1"})

    def no_pickle(*args, **kwargs):
        raise AssertionError("a snapshot must load without unpickling anything")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    loaded, metadata = load_snapshot(path)
    assert metadata == {"format": "pdd-snapshot/1", "run": "headct/full/code/seed0", "epoch": "1"}
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    assert loaded["1.num_batches_tracked"].dtype == torch.int64


@pytest.mark.parametrize("content", [b"", b"garbage that is not safetensors", None])
def test_a_damaged_or_foreign_snapshot_is_a_clear_error(tmp_path, content):
    path = tmp_path / "epoch_001.safetensors"
    if content is None:  # a valid safetensors file that pdd did not write
        from safetensors.torch import save_file

        save_file({"w": torch.ones(2)}, str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(PDDError, match="snapshot|not a pdd weights snapshot"):
        load_snapshot(path)


class FakeGPUs:
    """`count` visible GPUs for the CUDA RNG calls: a state set on an index beyond them raises IndexError,
    as torch's `default_generators[index]` does."""

    def __init__(self, monkeypatch, count: int, states: list[torch.Tensor] | None = None) -> None:
        self.count, self.set = count, {}
        self.states = states or [torch.full((16,), index, dtype=torch.uint8) for index in range(count)]
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(self.states))
        for module in (torch.cuda, torch.cuda.random):  # set_rng_state_all calls the module's own name
            monkeypatch.setattr(module, "set_rng_state", self.set_rng_state)

    def set_rng_state(self, state: torch.Tensor, device: int | str = "cuda") -> None:
        index = device if isinstance(device, int) else torch.device(device).index or 0
        if index >= self.count:
            raise IndexError("tuple index out of range")
        self.set[index] = state


def test_resuming_with_fewer_gpus_restores_what_it_can_and_names_the_rest(monkeypatch):
    saved = FakeGPUs(monkeypatch, 4)
    state = capture_rng_state(torch.device("cuda", 3))  # the run computed on GPU 3 of 4
    expected = _draws()
    resumed = FakeGPUs(monkeypatch, 2)
    notes = restore_rng_state(state, torch.device("cuda", 0))  # resumed on GPU 0 of 2
    assert _draws() == expected  # the CPU streams continue exactly
    # GPU 1 keeps its own index's state; the run's GPU (now 0) gets the state of the GPU it computed on
    assert {index: int(rng[0]) for index, rng in resumed.set.items()} == {0: 3, 1: 1}
    assert notes == ["the checkpoint holds the CUDA RNG states of 4 GPU(s), 2 GPU(s) are visible here: the states "
                     "of GPU(s) 2 were not restored (pdd's training draws no random numbers on a GPU; a model that "
                     "did would continue from another random stream there)"]
    assert saved.set == {}


def test_a_gpu_checkpoint_resumes_on_a_cpu_only_machine(monkeypatch):
    FakeGPUs(monkeypatch, 2)
    state = capture_rng_state(torch.device("cuda", 1))
    FakeGPUs(monkeypatch, 0)
    notes = restore_rng_state(state, torch.device("cpu"))
    assert len(notes) == 1 and "GPU(s) 0, 1 were not restored" in notes[0] and "sees no GPU" in notes[0]
