"""Pretrained weights of the two frozen teachers: find, download, verify and load them.

Resolution order for each teacher: an explicit local file -> the cache directory (argument, else
``$PDD_WEIGHTS_DIR``, else ``~/.cache/pdd/weights``) -> a download into that cache (`pdd.fetch`:
resumable, sha256 checked before the file takes its name) against the pins of `pdd.models.pretrained`. `pdd weights fetch` puts the files named
in params at their place the same way (`ensure_weights`). Offline and without the file, one
`WeightsError` says which file is needed, where to put it and its expected sha256.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from pdd.errors import WeightsError
from pdd.fetch import fetch_https, sha256_matches
from pdd.io import sha256_file
from pdd.models.pretrained import VMAMBA_TINY_WEIGHTS, WRN50_WEIGHTS, WeightsSpec

__all__ = [
    "WeightsSpec",
    "VMAMBA_TINY_WEIGHTS",
    "wrn50_weights_spec",
    "default_cache_dir",
    "resolve_weights",
    "ensure_weights",
    "manual_instructions",
    "load_checkpoint",
    "load_vmamba_weights",
    "weights_fingerprint",
    "RANDOM_INIT",
]

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"


def wrn50_weights_spec(tag: str = "racm_in1k") -> WeightsSpec:
    """The pinned file of `wide_resnet50_2.<tag>` (`pdd.models.pretrained`)."""
    if tag not in WRN50_WEIGHTS:
        raise WeightsError(f"unknown wide_resnet50_2 tag {tag!r}; choose one of {', '.join(WRN50_WEIGHTS)}")
    return WRN50_WEIGHTS[tag]


def default_cache_dir() -> Path:
    return Path(os.environ.get("PDD_WEIGHTS_DIR") or Path.home() / ".cache" / "pdd" / "weights")


def resolve_weights(
    spec: WeightsSpec,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> Path:
    """Path of a verified local copy of `spec`'s file (explicit file, then cache, then download)."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist. {manual_instructions(spec, path)}.")
        if problem := _sha256_problem(path, spec):  # the user's own choice of file: warn, do not refuse
            log.warning("%s; loading it anyway because it was given explicitly", problem)
        return path
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return ensure_weights(spec, cache / spec.filename, allow_download=allow_download,
                          hint=", or set PDD_WEIGHTS_DIR to a folder holding it, or pass its path explicitly")


def ensure_weights(spec: WeightsSpec, path: str | os.PathLike, *, allow_download: bool = True, hint: str = "") -> Path:
    """`path`, checked against `spec`'s pin; downloaded there first (resumably) when missing.

    A file that does not match the pin is refused, never overwritten: it may be someone's own copy.
    `hint` ends every error message with the caller's other ways out (its settings, a fallback).
    """
    path = Path(path)
    if path.is_file():
        if problem := _sha256_problem(path, spec):
            trust = f", or, if you trust it, set {spec.pinned_by} to its hash (or null)" if spec.pinned_by else ""
            raise WeightsError(f"{problem}: delete it so that it is downloaded again{trust}{hint}.")
        return path
    manual = f"{manual_instructions(spec, path)}{hint}."
    if not (allow_download and spec.url):
        reason = "downloads are disabled" if spec.url else "no download URL is set"
        raise WeightsError(f"{spec.name} weights are not available offline: {reason}. {manual}")
    return fetch_https(spec.url, path, spec.sha256, what=f"{spec.name} weights", manual_hint=manual,
                       error=WeightsError)


def manual_instructions(spec: WeightsSpec, path: Path) -> str:
    """How to put `spec`'s file at `path` by hand (e.g. on a cluster without internet)."""
    details = [f"sha256 {spec.sha256}"] if spec.sha256 else []
    details += [f"pinned by {spec.pinned_by}"] if spec.pinned_by and spec.sha256 else []
    details += [spec.note] if spec.note else []
    pinned = f" ({', '.join(details)})" if details else ""
    source = f" from {spec.url}" if spec.url else ""
    return f"Download {spec.filename}{pinned}{source} on a machine with internet and put it at {path}"


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded safely (`weights_only=True`), unwrapped from `{"model": ...}`."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise WeightsError(
            f"{path} is not a plain-tensor checkpoint ({exc}). If it comes from a source you trust, re-save "
            f"its weights: torch.save(torch.load(path, weights_only=False)['model'], new_path)"
        ) from exc
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    return checkpoint


def load_vmamba_weights(
    model: nn.Module,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
) -> Path:
    """Resolve VMamba-Tiny's checkpoint and load it into `model` strictly; returns the file used.

    The file is also recorded as `model.weights_file` for provenance (`weights_fingerprint`).
    """
    path = resolve_weights(VMAMBA_TINY_WEIGHTS, weights, cache_dir, allow_download)
    try:
        model.load_state_dict(load_checkpoint(path), strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit VMamba-Tiny v0: {exc}") from exc
    model.weights_file = path
    return path


def weights_fingerprint(path: str | os.PathLike | None) -> str:
    """sha256 of the weights file, or "random-init" when none was loaded; used for provenance."""
    return sha256_file(path) if path is not None else RANDOM_INIT


def _sha256_problem(path: Path, spec: WeightsSpec) -> str | None:
    """What is wrong with `path` when its sha256 does not fit `spec`'s pin; None when it fits."""
    if spec.sha256 is None:
        return None
    actual = sha256_file(path)
    if sha256_matches(actual, spec.sha256):
        return None
    pin = spec.pinned_by or f"the pinned sha256 of {spec.name}"
    return f"{path} has sha256 {actual}, but {pin} is {spec.sha256}"
