"""`pdd weights fetch`: the teacher files named in params, fetched from a local server, verified, explained."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pdd.config import load_params
from pdd.errors import WeightsError
from pdd.weights_cli import fetch_weights

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
