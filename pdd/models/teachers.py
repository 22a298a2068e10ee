"""The frozen ImageNet teachers: wide-ResNet50-2 (timm) and VMamba-Tiny.

Teachers never train: they stay in eval mode whatever `.train()` is called with (so BN running statistics never
move), hold no trainable parameters and run under `no_grad`. That makes their outputs a pure function of the
image, which is what lets the engine cache them on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Iterator

import timm
import torch
from torch import nn

from pdd.errors import ConfigError, WeightsError
from pdd.io import sha256_file
from pdd.models.options import PDDOptions
from pdd.models.vmamba import VMamba, vmamba_tiny

RANDOM_INIT = "random-init"


class FrozenModule(nn.Module):
    """A module that is permanently in eval mode and has no trainable parameters."""

    def freeze(self) -> FrozenModule:
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> FrozenModule:
        return super().train(False)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with the CPU RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class WideResNetTeacher(FrozenModule):
    """timm `wide_resnet50_2` returning the outputs of `layers` (1 = layer1 ... 4 = layer4)."""

    def __init__(
        self,
        tag: str = "racm_in1k",
        layers: tuple[int, ...] = (1, 2, 3, 4),
        pretrained: bool = False,
        weights: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model_name = f"wide_resnet50_2.{tag}"
        self.layers = tuple(layers)
        self.seed = seed
        self.weights_path = _existing_file(weights, "wrn_weights") if pretrained and weights else None
        from_hub = pretrained and self.weights_path is None
        try:
            with seeded(seed):
                self.body = timm.create_model(
                    self.model_name, features_only=True, out_indices=self.layers, pretrained=from_hub
                )
        except (OSError, RuntimeError) as exc:  # hub unreachable
            raise WeightsError(
                f"could not fetch {self.model_name} weights from the timm hub ({exc}). Fetch them with "
                "`pdd weights fetch wrn50` and pass the file as wrn_weights=PATH, or use pretrained=False."
            ) from exc
        if pretrained and self.weights_path is not None:
            _load_strict(self.body, self.weights_path, "wrn_weights")
        self.pretrained = pretrained
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.body(x)

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.model_name, "layers": list(self.layers), **_weights_identity(self)}


class VMambaTeacher(FrozenModule):
    """VMamba returning its four stage taps (after each stage's patch merging): Z0..Z3."""

    def __init__(
        self,
        depths: tuple[int, ...],
        dims: tuple[int, ...],
        pretrained: bool = False,
        weights: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.depths, self.dims, self.seed = tuple(depths), tuple(dims), seed
        self.pretrained = pretrained
        self.weights_path = _existing_file(weights, "vmamba_weights") if pretrained and weights else None
        tiny = PDDOptions()
        if pretrained and (self.depths, self.dims) != (tiny.vmamba_depths, tiny.vmamba_dims):
            raise ConfigError(
                "pretrained VMamba weights exist only for VMamba-Tiny; drop the vmamba_depths/vmamba_dims "
                "overrides or set pretrained=False"
            )
        with seeded(seed):
            if pretrained:
                self.body = vmamba_tiny(pretrained=True, weights=weights)
            else:
                self.body = VMamba(depths=self.depths, dims=self.dims)
        self.freeze()

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Channels of Z0..Z3: every tap is after a merge that doubles the width, except the last stage."""
        return (self.dims[1], self.dims[2], self.dims[3], self.dims[3])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(self.body.forward_features(x))

    def fingerprint(self) -> dict[str, Any]:
        return {
            "name": "vmamba_tiny" if self.pretrained else "vmamba",
            "depths": list(self.depths),
            "dims": list(self.dims),
            **_weights_identity(self),
        }


class Teachers(FrozenModule):
    """Both teachers of a variant; `forward` gives the named features the students learn from.

    Names follow docs/model.md: `R1..R4` for wide-ResNet layers 1-4, `Z0..Z3` for the VMamba taps.
    """

    def __init__(self, options: PDDOptions) -> None:
        super().__init__()
        # RD4AD's teacher stops at layer3: the bottleneck replaces layer4.
        layers = (1, 2, 3, 4) if options.variant.uses_vmamba else (1, 2, 3)
        self.wrn50 = WideResNetTeacher(
            options.wrn_tag, layers, options.pretrained, options.wrn_weights, options.teacher_seed
        )
        self.vmamba = (
            VMambaTeacher(
                options.vmamba_depths,
                options.vmamba_dims,
                options.pretrained,
                options.vmamba_weights,
                options.teacher_seed,
            )
            if options.variant.uses_vmamba
            else None
        )
        self.freeze()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {f"R{layer}": f for layer, f in zip(self.wrn50.layers, self.wrn50(x))}
        if self.vmamba is not None:
            features.update({f"Z{i}": f for i, f in enumerate(self.vmamba(x))})
        return features

    def fingerprint(self) -> dict[str, Any]:
        out = {"wrn50": self.wrn50.fingerprint()}
        if self.vmamba is not None:
            out["vmamba"] = self.vmamba.fingerprint()
        return out


def _existing_file(path: str, option: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise WeightsError(
            f"{option}={path!r} is not a file: fetch the teacher weights first (`pdd weights fetch`) or point "
            f"{option} at a downloaded copy; random-init teachers need no file (pretrained=False)"
        )
    return resolved


def _load_strict(body: nn.Module, path: Path, option: str) -> None:
    """Load every tensor `body` has from a full-model checkpoint; extra keys (the classifier, unused layers) are
    ignored but a missing or misshapen one is an error. (timm's own feature-model loading is non-strict and
    would silently keep random weights for a file of another architecture.)"""
    try:
        state = timm.models.load_state_dict(str(path))
        needed = body.state_dict().keys()
        missing = sorted(set(needed) - set(state))
        if missing:
            raise RuntimeError(f"{len(missing)} tensors missing, e.g. {missing[:3]}")
        body.load_state_dict({key: state[key] for key in needed}, strict=True)
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise WeightsError(
            f"{option}={str(path)!r} does not hold {getattr(body, 'model_name', 'the teacher')} weights ({exc}); "
            "fetch the right file with `pdd weights fetch`"
        ) from exc


def _weights_identity(teacher: WideResNetTeacher | VMambaTeacher) -> dict[str, Any]:
    if not teacher.pretrained:
        return {"weights": RANDOM_INIT, "seed": teacher.seed}
    if teacher.weights_path is not None:
        return {"weights": sha256_file(teacher.weights_path)}
    return {"weights": _state_dict_sha256(teacher)}


def _state_dict_sha256(module: nn.Module) -> str:
    """sha256 over every tensor's name and bytes: identifies weights fetched by a library we cannot see the file of."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
