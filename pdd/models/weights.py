"""Pretrained weights of the two frozen teachers: find, download, verify and load them.

Resolution order for each teacher: an explicit local file -> the cache directory (argument, else
``$PDD_WEIGHTS_DIR``, else ``~/.cache/pdd/weights``) -> a download into that cache (HTTP, sha256
checked, written to a temporary file then renamed). Offline and without the file, one `WeightsError`
says which file is needed, where to put it and its expected sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pdd.errors import WeightsError
from pdd.io import atomic_path, sha256_file

__all__ = [
    "WeightsSpec",
    "VMAMBA_TINY_WEIGHTS",
    "WRN50_TAGS",
    "wrn50_weights_spec",
    "default_cache_dir",
    "resolve_weights",
    "download",
    "load_checkpoint",
    "load_vmamba_weights",
    "create_wide_resnet50_2",
    "weights_fingerprint",
    "RANDOM_INIT",
]

log = logging.getLogger(__name__)

RANDOM_INIT = "random-init"


@dataclass(frozen=True)
class WeightsSpec:
    """One downloadable weights file. `sha256` may be a prefix (torch-hub file names carry 8 hex digits)."""

    name: str
    filename: str
    url: str | None
    sha256: str | None = None
    note: str = ""


VMAMBA_TINY_WEIGHTS = WeightsSpec(
    name="VMamba-Tiny v0 (ImageNet-1k, top-1 82.2)",
    filename="vssmtiny_dp01_ckpt_epoch_292.pth",
    url="https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmtiny_dp01_ckpt_epoch_292.pth",
    sha256="dbc0cc4f5ec0e45db5fba7c939d2c7d9b617e891ac10766912a8d604c37c5e47",
    note="sha256 as reported by a third-party runbook (91,649,482 bytes)",
)

# timm's bare name `wide_resnet50_2` resolves to `racm_in1k`, the weights PDD's code loads;
# `tv_in1k` are torchvision's original weights (what RD4AD used).
WRN50_TAGS = ("racm_in1k", "tv_in1k")


def wrn50_weights_spec(tag: str = "racm_in1k") -> WeightsSpec:
    """The file timm's pretrained config names for `wide_resnet50_2.<tag>` (sha256 prefix from its name)."""
    if tag not in WRN50_TAGS:
        raise WeightsError(f"unknown wide_resnet50_2 tag {tag!r}; choose one of {', '.join(WRN50_TAGS)}")
    import timm

    url = timm.models.get_pretrained_cfg(f"wide_resnet50_2.{tag}").url
    filename = url.rsplit("/", 1)[-1]
    return WeightsSpec(name=f"wide_resnet50_2.{tag}", filename=filename, url=url, sha256=filename.split("-")[-1][:8])


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
            raise WeightsError(f"weights file {path} does not exist; download {spec.filename} ({_where(spec)}) there")
        _check_sha256(path, spec, strict=False)  # the user's own choice of file: warn, do not refuse
        return path
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / spec.filename
    if path.is_file():
        _check_sha256(path, spec, strict=True)
        return path
    if allow_download and spec.url:
        try:
            return download(spec.url, path, spec.sha256)
        except (urllib.error.URLError, OSError) as exc:
            raise _missing(spec, path, reason=f"downloading it failed ({exc})") from exc
    raise _missing(spec, path, reason="downloads are disabled")


def download(url: str, target: str | os.PathLike, sha256: str | None = None, chunk_size: int = 1 << 20) -> Path:
    """Stream `url` into `target` atomically; a sha256 (or prefix) mismatch leaves nothing behind."""
    target = Path(target)
    digest = hashlib.sha256()
    with atomic_path(target) as tmp, urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
            while chunk := response.read(chunk_size):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if sha256 and not digest.hexdigest().startswith(sha256):
            raise WeightsError(
                f"{url} downloaded with sha256 {digest.hexdigest()}, expected {sha256}: the file is corrupt or "
                f"has changed upstream; nothing was saved. Retry, or download it by hand and pass its path."
            )
    return target


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


def create_wide_resnet50_2(
    tag: str = "racm_in1k",
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """timm's `wide_resnet50_2.<tag>` (e.g. `features_only=True`), its weights resolved like VMamba's.

    timm loads the resolved file strictly through `pretrained_cfg_overlay=dict(file=...)`; the
    file is recorded as `model.weights_file`.
    """
    import timm

    spec = wrn50_weights_spec(tag)
    path = resolve_weights(spec, weights, cache_dir, allow_download) if pretrained or weights else None
    overlay = {"pretrained_cfg_overlay": dict(file=str(path))} if path else {}
    try:
        model = timm.create_model(f"wide_resnet50_2.{tag}", pretrained=path is not None, **overlay, **timm_kwargs)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit wide_resnet50_2: {exc}") from exc
    model.weights_file = path
    return model


def weights_fingerprint(path: str | os.PathLike | None) -> str:
    """sha256 of the weights file, or "random-init" when none was loaded; used for provenance."""
    return sha256_file(path) if path is not None else RANDOM_INIT


def _check_sha256(path: Path, spec: WeightsSpec, strict: bool) -> None:
    if not spec.sha256:
        return
    actual = sha256_file(path)
    if actual.startswith(spec.sha256):
        return
    message = f"{path} has sha256 {actual}, but {spec.name} is expected to have {spec.sha256}"
    if strict:
        raise WeightsError(f"{message}; delete it so that it is downloaded again, or pass the file explicitly")
    log.warning("%s (%s); loading it anyway because it was given explicitly", message, spec.note or "known hash")


def _where(spec: WeightsSpec) -> str:
    return f"from {spec.url}" if spec.url else "see the project README"


def _missing(spec: WeightsSpec, path: Path, reason: str) -> WeightsError:
    expected = f" (sha256 {spec.sha256}{'; ' + spec.note if spec.note else ''})" if spec.sha256 else ""
    return WeightsError(
        f"{spec.name} weights are not available offline: {reason}. Download {spec.filename}{expected} "
        f"{_where(spec)} and put it at {path} (or set PDD_WEIGHTS_DIR to its folder, or pass its path explicitly)."
    )
