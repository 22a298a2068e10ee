"""Weights resolution (file -> cache -> download), served by a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import http.server
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

from pdd.errors import WeightsError
from pdd.models.vmamba import VMamba
from pdd.models.weights import (
    RANDOM_INIT,
    VMAMBA_TINY_WEIGHTS,
    WeightsSpec,
    create_wide_resnet50_2,
    default_cache_dir,
    load_checkpoint,
    load_vmamba_weights,
    resolve_weights,
    weights_fingerprint,
    wrn50_weights_spec,
)

SMALL = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
CLOSED_PORT_URL = "http://127.0.0.1:9/never-served.pth"  # discard port: nothing listens, fails at once


@pytest.fixture()
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL, request log)."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    thread.join()


def save_checkpoint(path: Path, state_dict, wrap: bool = True) -> str:
    torch.save({"model": state_dict} if wrap else state_dict, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_vmamba_checkpoint(path: Path, seed: int = 0) -> tuple[dict, str]:
    torch.manual_seed(seed)
    state_dict = VMamba(**SMALL).state_dict()
    state_dict.update({"head.weight": torch.zeros(3, 64), "head.bias": torch.zeros(3)})  # classifier, dropped
    return state_dict, save_checkpoint(path, state_dict)


def test_download_verifies_sha256_and_caches(served, tmp_path):
    root, base_url, requests = served
    _, digest = small_vmamba_checkpoint(root / "w.pth")
    spec = WeightsSpec(name="test weights", filename="w.pth", url=f"{base_url}/w.pth", sha256=digest)
    cache = tmp_path / "cache"
    path = resolve_weights(spec, cache_dir=cache)
    assert path == cache / "w.pth" and weights_fingerprint(path) == digest
    assert resolve_weights(spec, cache_dir=cache) == path
    assert requests == ["/w.pth"], "the second call must come from the cache"


def test_download_with_wrong_sha256_leaves_nothing(served, tmp_path):
    root, base_url, _ = served
    small_vmamba_checkpoint(root / "w.pth")
    spec = WeightsSpec(name="test weights", filename="w.pth", url=f"{base_url}/w.pth", sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="expected 0000"):
        resolve_weights(spec, cache_dir=cache)
    assert not cache.exists() or not list(cache.iterdir())


def test_offline_without_weights_names_file_place_and_sha256(tmp_path):
    spec = replace(VMAMBA_TINY_WEIGHTS, url=CLOSED_PORT_URL)
    with pytest.raises(WeightsError) as error:
        resolve_weights(spec, cache_dir=tmp_path)
    message = str(error.value)
    assert spec.filename in message and str(tmp_path / spec.filename) in message and spec.sha256 in message


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


def test_wide_resnet_specs_follow_timm():
    racm, tv = wrn50_weights_spec("racm_in1k"), wrn50_weights_spec("tv_in1k")
    assert racm.filename == "wide_resnet50_racm-8234f177.pth" and racm.sha256 == "8234f177"
    assert tv.filename == "wide_resnet50_2-95faca4d.pth" and tv.sha256 == "95faca4d"
    with pytest.raises(WeightsError, match="racm_in1k"):
        wrn50_weights_spec("imagenet")


def test_wide_resnet_loads_a_local_file_through_timm(tmp_path):
    import timm

    torch.manual_seed(0)
    source = timm.create_model("wide_resnet50_2", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "wrn.pth")
    model = create_wide_resnet50_2("racm_in1k", weights=tmp_path / "wrn.pth", features_only=True, out_indices=(1,))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer1[0].conv2.weight, source.layer1[0].conv2.weight)
    assert model.weights_file == tmp_path / "wrn.pth"
    with pytest.raises(WeightsError, match="PDD_WEIGHTS_DIR"):
        create_wide_resnet50_2("tv_in1k", cache_dir=tmp_path / "empty", allow_download=False)
