"""Fetch a dataset's raw archive (Kaggle API or HTTPS), verify it and extract it safely.

* **HTTPS** downloads (`pdd.fetch.fetch_https`) resume from ``<archive>.part`` with a ``Range``
  request and are checked against the source's pinned sha256; a mismatch is deleted and refused.
* **Kaggle** needs credentials (``~/.kaggle/kaggle.json``, ``$KAGGLE_CONFIG_DIR/kaggle.json`` or
  ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``) and the optional ``kaggle`` package, imported only here.
* **Manual** sources (licence agreements, Google Drive) are never fetched: the error message says
  exactly what to download and where to put it.

Archives are extracted with `pdd.data.archive.safe_extract`; partial files live in
``<raw>/.downloads/`` until the dataset is in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pdd.data.archive import safe_extract
from pdd.data.registry import DatasetSpec, Source
from pdd.errors import DataError
from pdd.fetch import fetch_https

DOWNLOADS = ".downloads"


def download(spec: DatasetSpec, raw: str | os.PathLike, *, retries: int = 3, backoff_s: float = 2.0) -> Path:
    """Put `spec`'s raw data into `raw` (unless already there) and return the folder holding its layout."""
    raw = Path(raw)
    present = spec.locate_raw(raw)
    if present is not None:
        return present
    automatic = [source for source in spec.sources if source.method != "manual"]
    if not automatic:
        raise DataError(f"{spec.title} cannot be downloaded automatically.\n{spec.download_instructions(raw)}")
    failures = []
    for source in automatic:
        try:
            archive = _fetch(spec, source, raw / DOWNLOADS, retries=retries, backoff_s=backoff_s)
        except DataError as exc:
            failures.append(str(exc))
            continue
        try:
            _unpack(archive, raw)
        except DataError:
            shutil.rmtree(archive.parent)  # a refused archive is deleted, not kept for resuming
            _remove_empty(raw)
            raise
        located = spec.locate_raw(raw)
        if located is None:
            raise DataError(f"the archive from {source.location} does not hold the expected layout.\n"
                            f"{spec.download_instructions(raw)}")
        return located
    _remove_empty(raw / DOWNLOADS)  # partial downloads stay for resuming
    _remove_empty(raw)
    raise DataError("\n".join(failures) + f"\nGet it by hand instead:\n{spec.download_instructions(raw)}")


def _remove_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _fetch(spec: DatasetSpec, source: Source, folder: Path, *, retries: int, backoff_s: float) -> Path:
    if source.method == "kaggle":
        return fetch_kaggle(source.location, folder)
    filename = source.filename or source.location.rstrip("/").rsplit("/", 1)[-1]
    return fetch_https(source.location, folder / filename, source.sha256, what=spec.name, error=DataError,
                       retries=retries, backoff_s=backoff_s)


def _unpack(archive: Path, raw: Path) -> None:
    extracted = safe_extract(archive, archive.parent / "extracted")
    for entry in sorted(extracted.iterdir()):
        destination = raw / entry.name
        if destination.exists():
            raise DataError(f"{destination} already exists and would be overwritten by the download; "
                            "move it away and run the command again.")
        os.replace(entry, destination)
    shutil.rmtree(archive.parent)


def kaggle_credentials_present() -> bool:
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    config_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (config_dir / "kaggle.json").is_file()


def fetch_kaggle(slug: str, folder: str | os.PathLike) -> Path:
    """Download Kaggle dataset `slug` as one zip into `folder` and return its path."""
    if not kaggle_credentials_present():
        raise DataError(
            "Kaggle credentials not found. Create an API token at https://www.kaggle.com/settings (API → Create "
            "New Token), save it as ~/.kaggle/kaggle.json with `chmod 600`, or set KAGGLE_USERNAME and KAGGLE_KEY."
        )
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as exc:
        raise DataError("the Kaggle client is not installed: run `pip install 'pdd[kaggle]'`.") from exc
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(slug, path=str(folder), unzip=False, quiet=False)
    except Exception as exc:  # the client raises its own, version-dependent exception types
        raise DataError(f"Kaggle download of {slug} failed: {exc}") from exc
    archives = sorted(folder.glob("*.zip"))
    if len(archives) != 1:
        raise DataError(f"the Kaggle download of {slug} left {len(archives)} zip files in {folder}; expected one.")
    return archives[0]
