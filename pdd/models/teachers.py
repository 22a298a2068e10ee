"""The frozen ImageNet teachers: wide-ResNet50-2 (timm) and VMamba-Tiny.

Teachers never train: they stay in eval mode whatever `.train()` is called with (so BN running statistics never
move), hold no trainable parameters and run under `no_grad`. That makes their outputs a pure function of the
image, which is what lets the engine cache them on disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from pdd.errors import ConfigError, WeightsError
from pdd.models.options import PDDOptions
from pdd.models.vmamba import VMamba, vmamba_tiny
from pdd.models.weights import RANDOM_INIT, load_checkpoint, resolve_weights, weights_fingerprint, wrn50_weights_spec


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
    """timm `wide_resnet50_2` returning the outputs of `layers` (1 = layer1 ... 4 = layer4).

    Pretrained weights are resolved by `pdd.models.weights` (the given file, else the cache, else a verified
    download) and loaded strictly here: timm's own loading into a feature model is non-strict and would keep
    random weights for a file of another architecture without a word.
    """

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
        with seeded(seed):
            self.body = timm.create_model(self.model_name, features_only=True, out_indices=self.layers)
        self.weights_file = resolve_weights(wrn50_weights_spec(tag), weights) if pretrained else None
        if self.weights_file is not None:
            _load_strict(self.body, self.weights_file, self.model_name)
        self.weights_id = weights_fingerprint(self.weights_file)  # hashed once: the engine asks repeatedly
        self.freeze()

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of the outputs, from timm's `feature_info`: the widths the adapters and students must match."""
        return tuple(self.body.feature_info.channels())

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
        tiny = PDDOptions()
        if pretrained and (self.depths, self.dims) != (tiny.vmamba_depths, tiny.vmamba_dims):
            raise ConfigError(
                "pretrained VMamba weights exist only for VMamba-Tiny; drop the vmamba_depths/vmamba_dims "
                "overrides or set pretrained=False"
            )
        with seeded(seed):
            self.body = vmamba_tiny(pretrained=True, weights=weights) if pretrained else VMamba(self.depths, self.dims)
        self.weights_file = getattr(self.body, "weights_file", None)
        self.weights_id = weights_fingerprint(self.weights_file)
        self.freeze()

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of Z0..Z3, from the backbone's timm-style `feature_info`."""
        return tuple(info["num_chs"] for info in self.body.feature_info)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(self.body.forward_features(x))

    def fingerprint(self) -> dict[str, Any]:
        name = "vmamba_tiny" if self.weights_file is not None else "vmamba"
        return {"name": name, "depths": list(self.depths), "dims": list(self.dims), **_weights_identity(self)}


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


def _load_strict(body: nn.Module, path: Path, model_name: str) -> None:
    """Load every tensor `body` has from a full-model checkpoint; the extra ones (classifier, unused layers)
    are ignored, a missing or misshapen one is an error."""
    state = load_checkpoint(path)
    needed = body.state_dict().keys()
    missing = sorted(set(needed) - set(state))
    try:
        if missing:
            raise RuntimeError(f"{len(missing)} tensors are missing, e.g. {missing[:3]}")
        body.load_state_dict({key: state[key] for key in needed}, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{path} does not hold {model_name} weights ({exc}); fetch the right file with `pdd weights fetch wrn50`"
        ) from exc


def _weights_identity(teacher: WideResNetTeacher | VMambaTeacher) -> dict[str, Any]:
    """The weights' sha256, or "random-init" and the seed that makes the init reproducible."""
    if teacher.weights_file is None:
        return {"weights": RANDOM_INIT, "seed": teacher.seed}
    return {"weights": teacher.weights_id}
