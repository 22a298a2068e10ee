"""Official-code weights: names and shapes against the authors' state dicts, round trip, strict loading."""

from __future__ import annotations

import json
import re

import pytest
import torch

from pdd.errors import WeightsError
from pdd.models.official import (
    PARTS,
    UNUSED_OFFICIAL_KEYS,
    convert_official_state_dict,
    load_official,
    to_official_state_dict,
)
from pdd.models.torch_model import build_pdd


@pytest.fixture(scope="module")
def reference(shared_reference):
    return json.loads((shared_reference / "pdd_official_state_dict.json").read_text())


@pytest.fixture(scope="module")
def tiny_full(tiny_pdd):
    return tiny_pdd("full", "code")


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every tensor (BN statistics included) shifted by its own amount, so that a load which skipped a tensor
    or swapped two of the same shape would show."""
    with torch.no_grad():
        for index, value in enumerate(model.state_dict().values()):
            value.add_(seed + index if not value.is_floating_point() else (seed + index) * 1e-3)
    return model


def test_official_names_and_shapes_are_the_authors(reference):
    """The official state dicts the real-size model exports are those the authors' modules have, key by key."""
    model = build_pdd("full", "code")
    for part in PARTS:
        exported = {key: list(value.shape) for key, value in to_official_state_dict(model, part).items()}
        official = {key: shape for key, shape in reference["parts"][part].items()
                    if key not in UNUSED_OFFICIAL_KEYS[part]}
        assert exported == official, part
        assert set(reference["parts"][part]) - set(official) == set(UNUSED_OFFICIAL_KEYS[part])


def test_a_training_checkpoint_in_the_official_layout_loads(reference, tiny_pdd, tmp_path):
    """The file rank 0 of `train_two_twins_ddp.py` saves, with its top-level keys read from the reference."""
    layout_keys = re.findall(r"'(\w+)':", reference["training_checkpoint_layout"])
    assert "decoder" in layout_keys
    source = _randomised(tiny_pdd("full", "code"), seed=1)
    decoder = {f"module.{key}": value for key, value in to_official_state_dict(source, "decoder").items()}
    other = {"optimizer": {"state": {}, "param_groups": [{"lr": 2e-3, "params": [0]}]},
             "scheduler": {"last_epoch": 90, "T_max": 40}, "epoch": 89}
    checkpoint = {key: decoder if key == "decoder" else other[key] for key in layout_keys}
    path = tmp_path / "epoch_90_auc=0.9750.pth"
    torch.save(checkpoint, path)

    target = tiny_pdd("full", "code")
    load_official(target, decoder=path)
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("teachers."):
            assert torch.equal(loaded[key], value), key


def test_export_and_import_are_exact_inverses(tiny_pdd):
    source = _randomised(tiny_pdd("full", "code"), seed=2)
    expected = source.state_dict()
    official = {part: to_official_state_dict(source, part) for part in PARTS}
    for part, state in official.items():
        back = convert_official_state_dict(state, part)
        assert back.keys() == {key for key in expected if _part_of(key) == part}
        assert all(torch.equal(back[key], expected[key]) for key in back)

    target = tiny_pdd("full", "code")
    load_official(target, **official)
    loaded = target.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], value) for key, value in expected.items())


def _part_of(key: str) -> str:
    return key.split(".")[1] if key.startswith("teachers.") else "decoder"


def test_every_missing_unexpected_and_misshapen_key_is_named(tiny_full, tiny_pdd):
    state = to_official_state_dict(tiny_full, "decoder")
    del state["mlp.branch2.weight"]
    state["layer4.0.conv1.weight"] = torch.zeros(1)
    state["up_dim_v_r1.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    target = tiny_pdd("full", "code")
    before = {key: value.clone() for key, value in target.state_dict().items()}
    with pytest.raises(WeightsError) as error:
        load_official(target, decoder=state)
    message = str(error.value)
    assert "1 missing: mpa.heads.1.weight" in message
    assert "1 unexpected: layer4.0.conv1.weight" in message
    assert "neck.ina.0.main.0.weight (3, 3, 1, 1)" in message
    assert all(torch.equal(before[key], value) for key, value in target.state_dict().items()), "nothing loaded"
    with pytest.raises(WeightsError, match="not official decoder names"):
        convert_official_state_dict({"layer4.0.conv1.weight": torch.zeros(1)}, "decoder")


def test_models_without_an_official_counterpart_are_refused(tiny_pdd):
    with pytest.raises(WeightsError, match="students.1"):
        to_official_state_dict(tiny_pdd("full", "paper"), "decoder")  # two decoders
    with pytest.raises(WeightsError, match="no official vmamba"):
        to_official_state_dict(tiny_pdd("M1", "code"), "vmamba")
