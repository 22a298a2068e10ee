"""A PDD model's weights outside the model: the trainable part, its snapshot file, the teachers' identity.

Training writes the trainable modules' weights as safetensors snapshots (`save_snapshot`), evaluation and
model bundles read them back into a freshly built model (`load_snapshot`, `load_trainable_state`); the
frozen teachers are never stored there but rebuilt from their weights, identified by `teacher_weights`.
Nothing here imports the engine, so a predictor loads a bundle without any training code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pdd.errors import PDDError
from pdd.io import atomic_path

SNAPSHOT_FORMAT = "pdd-snapshot/1"


def teacher_weights(model: torch.nn.Module) -> dict[str, str]:
    """{teacher: sha256 of the weights as loaded | "random-init"}, as provenance records them."""
    return {name: str(identity["weights"]) for name, identity in model.teacher_fingerprint().items()}


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state without the frozen teachers, which are rebuilt from their weights instead."""
    return {key: value for key, value in model.state_dict().items() if not key.startswith("teachers.")}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith("teachers.")]
    if missing or unexpected:
        raise PDDError(
            f"{source} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "was it written by another variant? Use a fresh --out directory"
        )


def save_snapshot(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write `state` as safetensors with string `metadata`, atomically.

    Tensors are copied to contiguous CPU memory of their own: safetensors refuses shared storage, which
    modules shared between students (`shared_students`) would otherwise have. The bytes go through a Python
    file object, so that a full disk raises ENOSPC (safetensors' own file writer replaces the target file)."""
    from safetensors.torch import save

    tensors = {name: value.detach().to("cpu").contiguous().clone() for name, value in state.items()}
    payload = save(tensors, metadata={"format": SNAPSHOT_FORMAT, **metadata})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(payload)


def read_snapshot_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise PDDError(f"snapshot {path} is unreadable ({type(exc).__name__}: {exc}); retrain the run "
                       "(`pdd train ... --resume --restart-if-changed`)") from exc
    if metadata.get("format") != SNAPSHOT_FORMAT:
        raise PDDError(f"{path} is not a pdd weights snapshot (format {metadata.get('format')!r}, "
                       f"expected {SNAPSHOT_FORMAT!r})")
    return metadata


def load_snapshot(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(weights, metadata) of one snapshot; no pickle is involved."""
    from safetensors.torch import load_file

    metadata = read_snapshot_metadata(path)
    try:
        return load_file(str(path), device=str(device)), metadata
    except Exception as exc:
        raise PDDError(f"snapshot {path} is unreadable ({type(exc).__name__}: {exc}); retrain the run") from exc
