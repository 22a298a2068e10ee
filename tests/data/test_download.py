"""Downloads against a local HTTP server on 127.0.0.1 (never the network), Kaggle with a stand-in client."""

from __future__ import annotations

import hashlib
import io
import sys
import types
import zipfile
from dataclasses import replace

import pytest

from pdd.data.download import DOWNLOADS, download
from pdd.data.registry import DATASETS, Source
from pdd.errors import DataError


def _headct_zip(evil: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("labels.csv", "id, hemorrhage\n0,1\n100,0\n")
        bundle.writestr("head_ct/000.png", b"\x89PNG fake")
        bundle.writestr("head_ct/100.png", b"\x89PNG fake too" * 200)
        if evil:
            bundle.writestr("../../escaped.txt", b"evil")
    return buffer.getvalue()


def _spec(server, path: str, sha256: str | None):
    return replace(DATASETS["headct"], manifest=None,
                   sources=(Source("https", server.url(path), "3 KB", sha256=sha256, filename="headct.zip"),))


def test_download_verifies_extracts_and_cleans_up(file_server, tmp_path):
    archive = _headct_zip()
    file_server.files["/headct.zip"] = archive
    root = download(_spec(file_server, "/headct.zip", hashlib.sha256(archive).hexdigest()), tmp_path / "raw")
    assert root == tmp_path / "raw"
    assert sorted(p.name for p in root.iterdir()) == ["head_ct", "labels.csv"]  # archive and .part removed
    assert download(_spec(file_server, "/headct.zip", None), tmp_path / "raw") == root  # present: no request
    assert len(file_server.requests) == 1


def test_checksum_mismatch_is_refused_and_leaves_nothing(file_server, tmp_path):
    file_server.files["/headct.zip"] = _headct_zip()
    with pytest.raises(DataError, match="checksum mismatch.*headct"):
        download(_spec(file_server, "/headct.zip", "0" * 64), tmp_path / "raw", retries=0)
    assert not (tmp_path / "raw").exists()


def test_interrupted_download_resumes_with_a_range_request(file_server, tmp_path, monkeypatch):
    monkeypatch.setattr("pdd.fetch.CHUNK_SIZE", 256)
    archive = _headct_zip()
    file_server.files["/headct.zip"] = archive
    file_server.cut_next.add("/headct.zip")
    root = download(_spec(file_server, "/headct.zip", hashlib.sha256(archive).hexdigest()), tmp_path / "raw",
                    retries=2, backoff_s=0)
    assert (root / "labels.csv").is_file()
    (_, first_range), (_, second_range) = file_server.requests
    resumed_at = int(second_range.removeprefix("bytes=").removesuffix("-"))
    assert first_range is None and 0 < resumed_at <= len(archive) // 2


def test_partial_file_from_an_earlier_run_is_continued(file_server, tmp_path):
    archive = _headct_zip()
    file_server.files["/headct.zip"] = archive
    downloads = tmp_path / "raw" / DOWNLOADS
    downloads.mkdir(parents=True)
    (downloads / "headct.zip.part").write_bytes(archive[:1000])
    root = download(_spec(file_server, "/headct.zip", hashlib.sha256(archive).hexdigest()), tmp_path / "raw",
                    retries=0)
    assert (root / "labels.csv").is_file() and not downloads.exists()
    assert file_server.requests == [("/headct.zip", "bytes=1000-")]


def test_malicious_archive_is_refused(file_server, tmp_path):
    archive = _headct_zip(evil=True)
    file_server.files["/headct.zip"] = archive
    with pytest.raises(DataError, match="refusing to extract"):
        download(_spec(file_server, "/headct.zip", hashlib.sha256(archive).hexdigest()),
                 tmp_path / "a" / "b" / "raw")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "a" / "b" / "raw").exists()


@pytest.mark.parametrize("path, status", [("/missing.zip", "HTTP 404"), ("/error", "HTTP 500")])
def test_http_errors_name_the_dataset_and_the_manual_route(file_server, tmp_path, path, status):
    with pytest.raises(DataError) as error:
        download(_spec(file_server, path, None), tmp_path / "raw", retries=1, backoff_s=0)
    message = str(error.value)
    assert status in message and "headct" in message and "Get it by hand" in message and "labels.csv" in message
    assert len(file_server.requests) == (2 if status == "HTTP 500" else 1)  # 5xx retried, 404 not


def test_manual_only_dataset_prints_instructions(tmp_path):
    with pytest.raises(DataError) as error:
        download(DATASETS["unimedical"], tmp_path / "raw")
    assert "cannot be downloaded automatically" in str(error.value)
    assert "1Q33X6UMS_2rfdOlHq-Levf7Df7z3tUKp" in str(error.value) and "meta.json" in str(error.value)


def test_kaggle_without_credentials_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    with pytest.raises(DataError, match=r"kaggle\.json") as error:
        download(DATASETS["brainmri"], tmp_path / "raw")
    assert "navoneel/brain-mri-images-for-brain-tumor-detection" in str(error.value)


def test_kaggle_download_goes_through_safe_extraction(tmp_path, monkeypatch):
    calls = []

    class FakeKaggleApi:
        def authenticate(self):
            calls.append("authenticate")

        def dataset_download_files(self, slug, path, unzip, quiet):
            calls.append((slug, unzip))
            with open(f"{path}/{slug.split('/')[1]}.zip", "wb") as handle:
                handle.write(_headct_zip())

    extended = types.ModuleType("kaggle.api.kaggle_api_extended")
    extended.KaggleApi = FakeKaggleApi
    for name, module in (("kaggle", types.ModuleType("kaggle")), ("kaggle.api", types.ModuleType("kaggle.api")),
                         ("kaggle.api.kaggle_api_extended", extended)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    root = download(replace(DATASETS["headct"], manifest=None), tmp_path / "raw")
    assert (root / "head_ct" / "100.png").is_file()
    assert calls == ["authenticate", ("felipekitamura/head-ct-hemorrhage", False)]
