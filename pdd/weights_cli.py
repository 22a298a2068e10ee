"""Teacher checkpoints named in `params.teachers`: fetched once, verified by sha256, never half-written.

`pdd weights fetch vmamba|wrn50` is the workflow's weights job. Offline (clusters, CI) it fails at
once and says where to put a copy downloaded elsewhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import requests
from tqdm import tqdm

from pdd.config import Params, WeightsParams, add_params_arguments, params_from_args
from pdd.errors import WeightsError
from pdd.io import atomic_path, sha256_file

TEACHERS = ("vmamba", "wrn50")
CHUNK = 1 << 20


def fetch_weights(params: Params, teacher: str, timeout_s: float = 30.0) -> Path:
    """Return the verified file of `teacher`, downloading it first when it is missing."""
    if teacher not in TEACHERS:
        raise WeightsError(f"unknown teacher {teacher!r}; use one of: {', '.join(TEACHERS)}")
    spec: WeightsParams = getattr(params.teachers, teacher)
    target = Path(spec.file)
    if not target.is_file():
        if not spec.url:
            raise WeightsError(f"{target} is missing and teachers.{teacher}.url is empty: {_manual(spec, teacher)}")
        _download(spec.url, target, teacher, spec, timeout_s)
    verify_weights(target, spec, teacher)
    return target


def verify_weights(path: Path, spec: WeightsParams, teacher: str) -> None:
    if spec.sha256 is not None and (actual := sha256_file(path)) != spec.sha256:
        raise WeightsError(f"{path} has sha256 {actual}, but teachers.{teacher}.sha256 is {spec.sha256}. "
                           f"Delete it and fetch again, or, if you trust this file, set teachers.{teacher}.sha256 "
                           "to its hash (or null).")


def _download(url: str, target: Path, teacher: str, spec: WeightsParams, timeout_s: float) -> None:
    try:
        with requests.get(url, stream=True, timeout=timeout_s) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0) or None
            with atomic_path(target) as tmp, open(tmp, "wb") as handle, \
                    tqdm(total=total, unit="B", unit_scale=True, desc=f"{teacher} weights") as progress:
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    progress.update(len(chunk))
                handle.flush()
                # verify before the rename, so a wrong file never sits under the final name
                verify_weights(tmp, spec, teacher)
    except requests.RequestException as exc:
        raise WeightsError(f"could not download {url} ({exc}): {_manual(spec, teacher)}") from None


def _manual(spec: WeightsParams, teacher: str) -> str:
    pinned = f"sha256 {spec.sha256}" if spec.sha256 else "any sha256 (not pinned)"
    source = f" from {spec.url}" if spec.url else ""
    return (f"download the {teacher} teacher checkpoint{source} on a machine with internet, copy it to "
            f"{spec.file} ({pinned}) and rerun; or run with random-init teachers (--set teachers.pretrained=false).")


def register(subparsers: argparse._SubParsersAction) -> None:
    weights = subparsers.add_parser("weights", help="fetch and verify the teachers' pretrained weights")
    actions = weights.add_subparsers(dest="weights_command", required=True)
    fetch = actions.add_parser("fetch", help="download (if missing) and verify a teacher checkpoint")
    fetch.add_argument("teachers", nargs="*", metavar="TEACHER",
                       help=f"which teachers ({', '.join(TEACHERS)}; default: both)")
    add_params_arguments(fetch)
    fetch.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    for teacher in args.teachers or TEACHERS:
        print(f"{teacher}: {fetch_weights(params, teacher)} OK")
    return 0
