"""VMamba v0: strict loading of the official naming, taps against the official code, shapes, gradients."""

from __future__ import annotations

import functools
import importlib
import json
import re

import pytest
import torch

from pdd.ops import available_backends, cross_scan_2d
from pdd.models.vmamba import VMamba, checkpoint_to_vmamba_state_dict, vmamba_tiny

vmamba_module = importlib.import_module("pdd.models.vmamba")

SMALL = dict(depths=(1, 1, 2, 1), dims=(24, 48, 96, 192))


@pytest.fixture(scope="module")
def manifest(shared_reference):
    return json.loads((shared_reference / "vmamba_tiny_state_dict.json").read_text())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return vmamba_tiny().eval()


def random_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=gen) for key, shape in shapes.items()}


def test_official_checkpoint_naming_loads_strictly(tiny, manifest):
    shapes = manifest["checkpoint_naming_v0"]
    state_dict = random_state_dict(shapes)
    tiny.load_state_dict({"model": state_dict}, strict=True)  # wrapped as in the release file
    ours = tiny.state_dict()
    classifier = {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    assert set(ours) == set(shapes) - classifier  # the classifier is dropped explicitly, nothing else
    assert sum(v.numel() for v in ours.values()) == manifest["_meta"]["total_numel_backbone_without_classifier_norm_head"]
    for key in ours:
        assert torch.equal(ours[key], state_dict[key]), key


def rename(key: str, rename_map: dict[str, str]) -> str:
    """Apply the manifest's prefix map, whose `{i}`/`{j}` stand for layer and block indices."""
    for old, new in rename_map.items():
        pattern = re.escape(old).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
        match = re.match(pattern, key)
        if match:
            return new.format(**match.groupdict()) + key[match.end():]
    return key


def test_pdd_renamed_checkpoint_loads_to_the_same_values(tiny, manifest):
    v0 = random_state_dict(manifest["checkpoint_naming_v0"], seed=1)
    rename_map = manifest["_meta"]["rename_map_checkpoint_to_pdd"]
    renamed = {rename(key, rename_map): value for key, value in v0.items()}
    assert set(renamed) == set(manifest["pdd_naming"])
    tiny.load_state_dict(renamed, strict=True)
    for key, value in tiny.state_dict().items():
        assert torch.equal(value, v0[key]), key


@pytest.mark.parametrize("defect", ["missing", "extra"])
def test_strict_load_names_the_offending_key(defect):
    model = VMamba(**SMALL)
    state_dict = model.state_dict()
    key = "layers.2.blocks.1.self_attention.A_logs"
    if defect == "missing":
        del state_dict[key]
    else:
        state_dict[key.replace("A_logs", "A_extra")] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=key if defect == "missing" else "A_extra"):
        model.load_state_dict(state_dict, strict=True)


@pytest.mark.parametrize("backend", [b for b in available_backends() if b != "cuda"]
                         + (["fused"] if "kernel" in available_backends() else []))
def test_reproduces_the_official_feature_taps(shared_reference, monkeypatch, backend):
    reference = torch.load(shared_reference / "vmamba_small_reference.pt", weights_only=True)
    config = reference["config"]
    model = VMamba(depths=config["depths"], dims=config["dims"], d_state=config["d_state"],
                   ssm_ratio=config["ssm_ratio"]).eval()
    model.load_state_dict(reference["state_dict"], strict=True)
    # "fused" walks the four routes in one kernel; the others scan the materialised routes.
    monkeypatch.setattr(vmamba_module, "cross_scan_2d", functools.partial(cross_scan_2d, backend=backend))
    with torch.no_grad():
        taps = model.forward_features(reference["input"])
    assert len(taps) == len(reference["features"]) == 4
    for i, (ours, theirs) in enumerate(zip(taps, reference["features"])):
        assert ours.shape == theirs.shape, i
        assert (ours - theirs).abs().max().item() <= 1e-4, i


def test_tiny_taps_and_feature_info_at_64px(tiny):
    with torch.no_grad():
        taps = tiny.forward_features(torch.randn(2, 3, 64, 64))
    expected = [(192, 8), (384, 16), (768, 32), (768, 32)]
    assert [(info["num_chs"], info["reduction"]) for info in tiny.feature_info] == expected
    for tap, (channels, reduction) in zip(taps, expected):
        assert tap.shape == (2, channels, 64 // reduction, 64 // reduction)
        # A channels_last view of the stage output, as the authors' VSSM.forward returns it.
        assert tap.is_contiguous(memory_format=torch.channels_last) and torch.isfinite(tap).all()


def test_gradients_reach_the_input_for_grad_cam():
    torch.manual_seed(0)
    model = VMamba(**SMALL).eval()
    image = torch.randn(1, 3, 32, 32, requires_grad=True)
    model.forward_features(image)[1].square().sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    block = model.layers[0].blocks[0].self_attention
    assert block.A_logs.grad.abs().sum() > 0 and block.x_proj_weight.grad.abs().sum() > 0


def test_initialisation_follows_mamba():
    ssm = VMamba(**SMALL).layers[0].blocks[0].self_attention
    assert torch.allclose(-torch.exp(ssm.A_logs), -torch.arange(1.0, 17.0).expand(192, 16))
    assert torch.equal(ssm.Ds, torch.ones(192))
    dt = torch.nn.functional.softplus(ssm.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6


def test_checkpoint_conversion_leaves_unknown_keys_for_strict_loading_to_report():
    converted = checkpoint_to_vmamba_state_dict({"model": {"head.weight": 1, "layers.0.blocks.0.op.Ds": 2, "x": 3}})
    assert converted == {"layers.0.blocks.0.self_attention.Ds": 2, "x": 3}
