"""Teacher weights: fetched over HTTP (a local server here), verified, and explained when unreachable."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from pdd.config import load_params
from pdd.errors import WeightsError
from pdd.weights import fetch_weights

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
PAYLOAD = b"not really a checkpoint" * 1000


@pytest.fixture()
def weights_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "teacher.pth").write_bytes(PAYLOAD)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _params(tmp_path, url, sha256):
    target = tmp_path / "weights" / "vmamba.pth"
    return load_params(PARAMS, [f"teachers.vmamba.file={target}", f"teachers.vmamba.url={url}",
                                f"teachers.vmamba.sha256={sha256}"]), target


def test_fetch_downloads_and_verifies(tmp_path, weights_server):
    params, target = _params(tmp_path, f"{weights_server}/teacher.pth", hashlib.sha256(PAYLOAD).hexdigest())
    assert fetch_weights(params, "vmamba") == target
    assert target.read_bytes() == PAYLOAD
    assert fetch_weights(params, "vmamba") == target  # present: verified, not fetched again


def test_wrong_hash_never_lands_under_the_final_name(tmp_path, weights_server):
    params, target = _params(tmp_path, f"{weights_server}/teacher.pth", "f" * 64)
    with pytest.raises(WeightsError, match="teachers.vmamba.sha256"):
        fetch_weights(params, "vmamba")
    assert not target.exists() and not list(target.parent.glob("*.tmp"))


def test_unreachable_url_says_where_to_put_the_file(tmp_path, weights_server):
    params, target = _params(tmp_path, f"{weights_server}/missing.pth", "null")
    with pytest.raises(WeightsError) as raised:
        fetch_weights(params, "vmamba")
    assert str(target) in str(raised.value) and "teachers.pretrained=false" in str(raised.value)
