"""The wide-ResNet teacher: local weights files, fingerprints, errors that say what to do."""

from __future__ import annotations

import pytest
import timm
import torch

from pdd.errors import ConfigError, WeightsError
from pdd.io import sha256_file
from pdd.models.teachers import VMambaTeacher, WideResNetTeacher


@pytest.fixture(scope="module")
def wrn_file(tmp_path_factory):
    """A wide_resnet50_2 checkpoint in timm's layout, with weights no random init would reproduce."""
    torch.manual_seed(123)
    source = timm.create_model("wide_resnet50_2", pretrained=False)
    with torch.no_grad():
        source.layer1[0].conv1.weight.mul_(3.0)
        source.layer4[2].bn3.running_mean.fill_(0.25)
    path = tmp_path_factory.mktemp("weights") / "wrn50.pth"
    torch.save(source.state_dict(), path)
    return path, source.state_dict()


def test_local_weights_file_is_loaded_and_fingerprinted(wrn_file):
    path, state = wrn_file
    teacher = WideResNetTeacher(pretrained=True, weights=str(path), layers=(1, 2, 3))
    loaded = teacher.body.state_dict()
    assert torch.equal(loaded["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert "layer4.2.bn3.running_mean" not in loaded  # layers=(1, 2, 3) drops layer4
    assert teacher.fingerprint() == {
        "name": "wide_resnet50_2.racm_in1k",
        "layers": [1, 2, 3],
        "weights": sha256_file(path),
    }
    features = teacher(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4)]


def test_missing_or_foreign_weights_raise_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        WideResNetTeacher(pretrained=True, weights=str(tmp_path / "absent.pth"))
    foreign = tmp_path / "foreign.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "conv1.weight": torch.zeros(64, 3, 7, 7)}, foreign)
    with pytest.raises(WeightsError, match="pdd weights fetch wrn50"):
        WideResNetTeacher(pretrained=True, weights=str(foreign))
    misshapen = tmp_path / "misshapen.pth"
    state = WideResNetTeacher(layers=(1,)).body.state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, misshapen)
    with pytest.raises(WeightsError, match="size mismatch"):
        WideResNetTeacher(pretrained=True, weights=str(misshapen), layers=(1,))


def test_teacher_ignores_train_mode():
    teacher = WideResNetTeacher(layers=(1,))
    teacher.train()
    assert not any(m.training for m in teacher.modules())
    stats = teacher.body.state_dict()["bn1.running_mean"].clone()
    teacher(torch.randn(2, 3, 32, 32) * 5 + 2)
    assert torch.equal(stats, teacher.body.state_dict()["bn1.running_mean"])


def test_pretrained_vmamba_must_be_tiny():
    with pytest.raises(ConfigError, match="VMamba-Tiny"):
        VMambaTeacher(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), pretrained=True)


def test_teachers_report_the_widths_of_the_maps_they_return():
    """`channels` (from the backbones' feature_info) is what PDDModel sizes the adapters and students with."""
    images = torch.randn(1, 3, 64, 64)
    wrn = WideResNetTeacher(layers=(1, 2, 3))
    vmamba = VMambaTeacher(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    assert wrn.channels == (256, 512, 1024)
    assert wrn.channels == tuple(f.shape[1] for f in wrn(images))
    assert vmamba.channels == (16, 32, 64, 64)
    assert vmamba.channels == tuple(f.shape[1] for f in vmamba(images))
