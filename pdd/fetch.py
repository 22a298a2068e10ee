"""Resumable, verified HTTPS downloads: the one transfer loop behind datasets and teacher weights.

Bytes arrive in ``<dest>.part``; an interrupted transfer is continued with a ``Range`` request, by a
retry or by running the command again, so a dropped multi-GB download never starts over. The finished
file is checked against its pinned sha256 before it takes its final name (atomically, `pdd.io`): on
mismatch it is deleted and refused. Errors are of the caller's `PDDError` subclass, name what was being
fetched and end with the caller's manual route.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import requests
from tqdm import tqdm

from pdd.errors import PDDError
from pdd.io import atomic_path, sha256_file

__all__ = ["CHUNK_SIZE", "fetch_https", "sha256_matches"]

CHUNK_SIZE = 1 << 20  # bytes per read; an interruption loses at most one partial chunk


class _RetryableError(Exception):
    """A transient failure (connection lost, timeout, HTTP 5xx) worth another attempt."""


class _RefusedError(Exception):
    """A failure that another attempt would not fix (HTTP 4xx, a malformed URL)."""


def sha256_matches(digest: str, expected: str | None) -> bool:
    """Whether `digest` fits the pin `expected`: None means not pinned; a prefix (timm's file names
    carry 8 hex digits) pins only that much."""
    return expected is None or digest.startswith(expected.lower())


def fetch_https(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None,
    *,
    what: str,
    manual_hint: str = "",
    error: type[PDDError] = PDDError,
    retries: int = 3,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
) -> Path:
    """Download `url` to `dest`, resuming from ``dest.part``; keep it only if it matches `sha256`.

    Transient failures (connection lost, timeout, HTTP 5xx) are retried, at once when the transfer
    had progressed, else after a growing pause, up to `retries` times in a row. `what` names the
    download in messages (a dataset, a teacher); `manual_hint` ends every message (how to get the
    file by hand); failures raise `error`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    def fail(message: str) -> PDDError:
        return error(f"{message} {manual_hint}".rstrip())

    failures = 0  # in a row without progress: a link that drops now and then still gets there
    while True:
        received = _size(part)
        try:
            _transfer(url, part, timeout_s=timeout_s)
            break
        except _RetryableError as exc:
            if _size(part) > received:  # the server is there and the connection dropped: resume at once
                failures = 0
                continue
            failures += 1
            if failures > retries:
                kept = f" The partial file {part} is kept: run the command again to resume." if part.exists() else ""
                raise fail(f"downloading {what} from {url} failed after {failures} attempts without progress "
                           f"({exc}).{kept}") from exc
            time.sleep(backoff_s * failures)
        except _RefusedError as exc:
            raise fail(f"downloading {what} from {url} failed: {exc}.") from exc
    digest = sha256_file(part)
    if not sha256_matches(digest, sha256):
        part.unlink()
        raise fail(f"checksum mismatch for {what} from {url}: got sha256 {digest}, expected {sha256}. The file "
                   "was deleted; the server copy may have changed or been tampered with.")
    with atomic_path(dest) as tmp:  # fsync and rename: the final name only ever holds a whole, verified file
        os.replace(part, tmp)
    return dest


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _transfer(url: str, part: Path, *, timeout_s: float) -> None:
    """Append the rest of `url` to `part` (all of it when the server ignores ``Range``)."""
    offset = _size(part)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with requests.get(url, headers=headers, stream=True, timeout=timeout_s) as response:
            if response.status_code == 416 and offset:
                return  # the partial file is already complete
            if response.status_code >= 500:
                raise _RetryableError(f"HTTP {response.status_code} {response.reason}")
            if response.status_code >= 400:
                raise _RefusedError(f"HTTP {response.status_code} {response.reason}")
            if offset and response.status_code != 206:
                offset = 0  # the server ignored the Range header: start over
            length = int(response.headers.get("Content-Length", 0)) or None
            with open(part, "ab" if offset else "wb") as handle, tqdm(
                total=offset + length if length else None, initial=offset, unit="B", unit_scale=True,
                desc=part.name.removesuffix(".part"), disable=None,
            ) as progress:
                for chunk in response.iter_content(CHUNK_SIZE):
                    handle.write(chunk)
                    progress.update(len(chunk))
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
    except requests.RequestException as exc:  # malformed URL, unsupported scheme, too many redirects
        raise _RefusedError(f"{type(exc).__name__}: {exc}") from exc
