"""`pdd weights fetch`: the teacher files named in params, fetched from a local server, verified, explained."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pdd.config import load_params
from pdd.errors import WeightsError
from pdd.models.cli import fetch_weights

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
PAYLOAD = b"not really a checkpoint" * 1000


def _params(tmp_path, url, sha256):
    target = tmp_path / "weights" / "vmamba.pth"
    return load_params(PARAMS, [f"teachers.vmamba.file={target}", f"teachers.vmamba.url={url}",
                                f"teachers.vmamba.sha256={sha256}"]), target


def test_dropped_download_resumes_and_is_verified_once_in_place(tmp_path, file_server, monkeypatch):
    monkeypatch.setattr("pdd.fetch.CHUNK_SIZE", 1024)
    file_server.files["/teacher.pth"] = PAYLOAD
    file_server.cut_next.add("/teacher.pth")
    params, target = _params(tmp_path, file_server.url("/teacher.pth"), hashlib.sha256(PAYLOAD).hexdigest())
    assert fetch_weights(params, "vmamba") == target
    assert target.read_bytes() == PAYLOAD and not list(target.parent.glob("*.part"))
    assert fetch_weights(params, "vmamba") == target  # present: verified, not fetched again
    (_, first), (_, second) = file_server.requests
    assert first is None and 0 < int(second.removeprefix("bytes=").removesuffix("-")) <= len(PAYLOAD) // 2


def test_wrong_hash_never_lands_under_the_final_name(tmp_path, file_server):
    file_server.files["/teacher.pth"] = PAYLOAD
    params, target = _params(tmp_path, file_server.url("/teacher.pth"), "f" * 64)
    with pytest.raises(WeightsError, match="teachers.vmamba.sha256"):
        fetch_weights(params, "vmamba")
    assert not target.exists() and not list(target.parent.iterdir())


def test_unreachable_url_says_where_to_put_the_file(tmp_path, file_server):
    params, target = _params(tmp_path, file_server.url("/missing.pth"), "null")
    with pytest.raises(WeightsError) as raised:
        fetch_weights(params, "vmamba")
    assert str(target) in str(raised.value) and "teachers.pretrained=false" in str(raised.value)


def test_the_pinned_wide_resnet_file_is_checked_by_the_digits_in_its_name(tmp_path, file_server, monkeypatch):
    """`sha256: null` at the pinned URL still checks the 8 hex digits timm's file name carries."""
    from pdd.models import pretrained

    url = file_server.url("/wide_resnet50_racm-00000000.pth")
    file_server.files["/wide_resnet50_racm-00000000.pth"] = PAYLOAD  # its sha256 does not start with 00000000
    monkeypatch.setitem(pretrained.WRN50_WEIGHTS, "racm_in1k", pretrained._timm_hub_file("racm_in1k", url))
    target = tmp_path / "weights" / "wrn.pth"
    params = load_params(PARAMS, [f"teachers.wrn50.file={target}"])
    with pytest.raises(WeightsError, match="00000000"):
        fetch_weights(params, "wrn50")
    assert not target.exists()
    own = load_params(PARAMS, [f"teachers.wrn50.file={target}", f"teachers.wrn50.url={url}x"])
    file_server.files["/wide_resnet50_racm-00000000.pthx"] = PAYLOAD
    assert fetch_weights(own, "wrn50") == target  # a URL of one's own, no sha256 of one's own: not pinned
