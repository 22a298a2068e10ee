"""Weights resolution (file -> cache -> download), served by a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pdd.config import load_params
from pdd.errors import WeightsError
from pdd.models.pretrained import WRN50_TAGS
from pdd.models.vmamba import VMamba
from pdd.models.weights import (
    RANDOM_INIT,
    VMAMBA_TINY_WEIGHTS,
    WeightsSpec,
    default_cache_dir,
    load_checkpoint,
    load_vmamba_weights,
    resolve_weights,
    weights_fingerprint,
    wrn50_weights_spec,
)

SMALL = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
CLOSED_PORT_URL = "http://127.0.0.1:9/never-served.pth"  # discard port: nothing listens, fails at once


def save_checkpoint(path: Path, state_dict, wrap: bool = True) -> str:
    torch.save({"model": state_dict} if wrap else state_dict, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_vmamba_checkpoint(path: Path, seed: int = 0) -> tuple[dict, str]:
    torch.manual_seed(seed)
    state_dict = VMamba(**SMALL).state_dict()
    state_dict.update({"head.weight": torch.zeros(3, 64), "head.bias": torch.zeros(3)})  # classifier, dropped
    return state_dict, save_checkpoint(path, state_dict)


def served_checkpoint(file_server) -> tuple[WeightsSpec, str]:
    """A small checkpoint on the local server and the spec that names it (pinned by its sha256)."""
    buffer = io.BytesIO()
    torch.save(VMamba(**SMALL).state_dict(), buffer)
    file_server.files["/w.pth"] = buffer.getvalue()
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    return WeightsSpec(name="test", filename="w.pth", url=file_server.url("/w.pth"), sha256=digest), digest


def test_download_verifies_sha256_and_caches(file_server, tmp_path):
    spec, digest = served_checkpoint(file_server)
    cache = tmp_path / "cache"
    path = resolve_weights(replace(spec, sha256=digest[:8]), cache_dir=cache)  # a prefix pin, as timm's names
    assert resolve_weights(spec, cache_dir=cache) == path
    assert path == cache / "w.pth" and weights_fingerprint(path) == digest
    assert file_server.requests == [("/w.pth", None)], "the second call must come from the cache"


def test_unavailable_weights_name_file_place_and_sha256(file_server, tmp_path):
    spec = replace(VMAMBA_TINY_WEIGHTS, url=file_server.url("/gone.pth"))
    for allow_download in (True, False):
        with pytest.raises(WeightsError) as error:
            resolve_weights(spec, cache_dir=tmp_path, allow_download=allow_download)
        message = str(error.value)
        assert spec.filename in message and str(tmp_path / spec.filename) in message and spec.sha256 in message
        assert ("HTTP 404" in message) is allow_download and "PDD_WEIGHTS_DIR" in message
    assert len(file_server.requests) == 1 and not list(tmp_path.iterdir())


def test_explicit_file_wins_over_cache_and_cache_over_download(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    _, cached_digest = small_vmamba_checkpoint(cache / "w.pth", seed=0)
    _, explicit_digest = small_vmamba_checkpoint(tmp_path / "mine.pth", seed=1)
    spec = WeightsSpec(name="test weights", filename="w.pth", url=CLOSED_PORT_URL, sha256=cached_digest)
    assert resolve_weights(spec, tmp_path / "mine.pth", cache_dir=cache) == tmp_path / "mine.pth"
    monkeypatch.setenv("PDD_WEIGHTS_DIR", str(cache))
    assert default_cache_dir() == cache
    assert resolve_weights(spec) == cache / "w.pth"
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(spec, tmp_path / "absent.pth")
    assert explicit_digest != cached_digest


def test_corrupt_cached_file_is_refused(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"not the weights")
    spec = WeightsSpec(name="test weights", filename="w.pth", url=CLOSED_PORT_URL, sha256="ab" * 32)
    with pytest.raises(WeightsError, match="delete it"):
        resolve_weights(spec, cache_dir=tmp_path)


def test_load_vmamba_weights_unwraps_drops_classifier_and_records_file(tmp_path):
    state_dict, digest = small_vmamba_checkpoint(tmp_path / "w.pth", seed=3)
    model = VMamba(**SMALL)
    assert weights_fingerprint(model.weights_file) == RANDOM_INIT
    assert load_vmamba_weights(model, tmp_path / "w.pth") == tmp_path / "w.pth"
    assert weights_fingerprint(model.weights_file) == digest
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_dict[key]), key


def test_load_vmamba_weights_into_another_architecture_names_the_key(tmp_path):
    small_vmamba_checkpoint(tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="size mismatch for patch_embed.proj.weight"):
        load_vmamba_weights(VMamba(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)), tmp_path / "w.pth")


def test_non_tensor_checkpoint_is_refused_with_instructions(tmp_path):
    torch.save({"model": {}, "args": object()}, tmp_path / "pickled.pth")
    with pytest.raises(WeightsError, match="weights_only=False"):
        load_checkpoint(tmp_path / "pickled.pth")
    torch.save({"a": torch.ones(1)}, tmp_path / "plain.pth")
    assert list(load_checkpoint(tmp_path / "plain.pth")) == ["a"]


@pytest.mark.parametrize("tag", WRN50_TAGS)
def test_wide_resnet_pins_are_timms_pretrained_files(tag):
    """pdd writes the URLs down once (`pdd.models.pretrained`) so that params validate without timm; timm decides."""
    import timm

    assert wrn50_weights_spec(tag).url == timm.models.get_pretrained_cfg(f"wide_resnet50_2.{tag}").url


def test_params_take_url_and_sha256_from_the_pins_unless_set():
    params = load_params(PARAMS)
    assert (params.teachers.vmamba.url, params.teachers.vmamba.sha256) == (VMAMBA_TINY_WEIGHTS.url,
                                                                           VMAMBA_TINY_WEIGHTS.sha256)
    assert params.teachers.wrn50.url == wrn50_weights_spec("racm_in1k").url
    assert load_params(PARAMS, ["teachers.wrn50.tag=tv_in1k"]).teachers.wrn50.url == wrn50_weights_spec("tv_in1k").url
    own = load_params(PARAMS, ["teachers.vmamba.url=http://mirror/v.pth", "teachers.vmamba.sha256=null",
                               "teachers.wrn50.url=null"]).teachers
    assert (own.vmamba.url, own.vmamba.sha256, own.wrn50.url) == ("http://mirror/v.pth", None, None)


def test_wide_resnet_specs_follow_timm():
    racm, tv = wrn50_weights_spec("racm_in1k"), wrn50_weights_spec("tv_in1k")
    assert racm.filename == "wide_resnet50_racm-8234f177.pth" and racm.sha256 == "8234f177"
    assert tv.filename == "wide_resnet50_2-95faca4d.pth" and tv.sha256 == "95faca4d"
    with pytest.raises(WeightsError, match="racm_in1k"):
        wrn50_weights_spec("imagenet")
