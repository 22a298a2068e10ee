"""Vanilla VMamba (v0), the frozen teacher of PDD, in plain PyTorch.

Parameter names mirror the official v0 checkpoint (`vssmtiny_dp01_ckpt_epoch_292.pth`), so it loads
with ``strict=True``. The ImageNet classifier (`norm`, `head`) is not part of this feature extractor:
PDD never calls it, so `load_state_dict` drops exactly those keys. Checkpoints in the naming of PDD's
own copy of the code (`patch_embed.0.`, `.op.`, `classifier.`) are renamed on load.

All tensors are channels-last (B, H, W, C) inside the network, as in the original code, and the taps
are channels_last views of them (`VMamba.forward_features`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from pdd.ops import cross_scan_2d

__all__ = ["VMamba", "vmamba_tiny", "VMAMBA_TINY_CONFIG", "checkpoint_to_vmamba_state_dict"]

VMAMBA_TINY_CONFIG: dict[str, Any] = dict(depths=(2, 2, 9, 2), dims=96, d_state=16, ssm_ratio=2.0, drop_path_rate=0.2)
CLASSIFIER_KEYS = ("norm.weight", "norm.bias", "head.weight", "head.bias")
# PDD's copy of the code (= VMamba's later root vmamba.py) and the v0 ImageNet checkpoint name the same tensors
# differently: (where the module sits, its name in the code, its name in the checkpoint), declared once for both
# directions. The classifier has no counterpart in PDD's model, so only checkpoint -> code renames it.
_CODE_AND_CHECKPOINT_NAMES = (
    ("", "patch_embed.0", "patch_embed.proj"),
    ("", "patch_embed.2", "patch_embed.norm"),
    (r"layers\.\d+\.blocks\.\d+\.", "norm", "ln_1"),
    (r"layers\.\d+\.blocks\.\d+\.", "op", "self_attention"),
    (r"layers\.\d+\.downsample\.", "1", "norm"),
    (r"layers\.\d+\.downsample\.", "2", "reduction"),
)


def _renames(source: int, target: int) -> tuple[tuple[str, str], ...]:
    """(pattern, replacement) pairs renaming column `source` of `_CODE_AND_CHECKPOINT_NAMES` into `target`."""
    return tuple((rf"^({scope}){re.escape(names[source])}\.", rf"\g<1>{names[target]}.")
                 for scope, *names in _CODE_AND_CHECKPOINT_NAMES)


PDD_TO_CHECKPOINT_NAMES = (*_renames(0, 1), (r"^classifier\.(norm|head)\.", r"\1."))
CHECKPOINT_TO_PDD_NAMES = _renames(1, 0)
_DIRECTIONS = 4  # row-major, column-major, and both reversed


class SS2D(nn.Module):
    """2-D selective scan (forward_type v0): four 1-D scans over the image, summed back per pixel."""

    def __init__(self, dim: int, d_state: int = 16, ssm_ratio: float = 2.0, dt_rank: int | str = "auto") -> None:
        super().__init__()
        d_inner = int(ssm_ratio * dim)
        self.d_state, self.d_inner = d_state, d_inner
        self.dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        k = _DIRECTIONS
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, kernel_size=3, padding=1, groups=d_inner, bias=True)
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_logs = nn.Parameter(torch.empty(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """Mamba's initialisation: S4D-real A, unit D, and dt log-uniform in [dt_min, dt_max] via its bias."""
        bound = self.d_inner**-0.5
        self.x_proj_weight.uniform_(-bound, bound)  # nn.Linear's default for the stacked projections
        self.dt_projs_weight.uniform_(-(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand_like(self.dt_projs_bias) * math.log(dt_max / dt_min) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        length, d_inner, n_state, rank = height * width, self.d_inner, self.d_state, self.dt_rank
        # Two projections instead of one chunked: x must be dense channels-last for the depthwise conv to
        # read it without a copy (a chunk of the joint output has a pixel stride of 2 * d_inner).
        x_weight, z_weight = self.in_proj.weight.chunk(2, dim=0)
        x, z = F.linear(x, x_weight), F.linear(x, z_weight)
        # Every tensor stays channels-last (pixel-major, channels innermost) end to end: the depthwise conv
        # runs on a channels_last view and returns channels_last memory, so `xs` is a view, and the fused
        # scan reads it and writes y in that layout (docs: benchmarks/README.md). The routes are never
        # materialised: projections are per pixel, so they run once in pixel order and `cross_scan_2d`
        # visits the pixels in each route's order.
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        xs = x.permute(0, 2, 3, 1).reshape(batch, length, d_inner)
        x_dbl = F.linear(xs, self.x_proj_weight.flatten(0, 1)).view(batch, length, _DIRECTIONS, -1)
        dt, B, C = x_dbl.split([rank, n_state, n_state], dim=-1)  # B, C: strided views, read in place
        dt = torch.bmm(dt.permute(2, 0, 1, 3).reshape(_DIRECTIONS, -1, rank), self.dt_projs_weight.transpose(1, 2))
        # The bias and softplus of the steps are applied by the scan as it reads them: no pass over dt here.
        y = cross_scan_2d(xs, dt.view(_DIRECTIONS, batch, length, d_inner), -torch.exp(self.A_logs.float()), B, C,
                          self.Ds.float(), height, width, delta_bias=self.dt_projs_bias.flatten().float(),
                          delta_softplus=True)
        y = self.out_norm(y.view(batch, height, width, d_inner)) * F.silu(z)
        return self.out_proj(y)


class VSSBlock(nn.Module):
    """x + DropPath(SS2D(LN(x))); the v0 block has no MLP branch."""

    def __init__(self, dim: int, drop_path: float = 0.0, **ssm_kwargs: Any) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = SS2D(dim, **ssm_kwargs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))


class PatchMerging(nn.Module):
    """Swin patch merging (v1): 2x2 neighbours concatenated -> LN(4C) -> Linear(4C -> 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        # Order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size² patches -> linear projection -> LN (v1), channels-last out."""

    def __init__(self, in_chans: int, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class VMambaStage(nn.Module):
    def __init__(self, dim: int, depth: int, drop_path: Sequence[float], downsample: bool, **ssm_kwargs: Any):
        super().__init__()
        self.blocks = nn.ModuleList(VSSBlock(dim, drop_path=p, **ssm_kwargs) for p in drop_path[:depth])
        self.downsample = PatchMerging(dim) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class VMamba(nn.Module):
    """VMamba v0 backbone returning one feature map per stage, each taken after the stage's patch merging.

    At 256² with Tiny's widths the taps are 192@32², 384@16², 768@8², 768@8² (B×C×H×W), as PDD uses them.
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 2, 9, 2),
        dims: int | Sequence[int] = 96,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        patch_size: int = 4,
        in_chans: int = 3,
        drop_path_rate: float = 0.2,
    ) -> None:
        super().__init__()
        dims = [int(dims) * 2**i for i in range(len(depths))] if isinstance(dims, int) else list(dims)
        if len(dims) != len(depths):
            raise ValueError(f"dims {dims} and depths {list(depths)} must have one entry per stage")
        self.depths, self.dims, self.patch_size = list(depths), dims, patch_size
        self.weights_file: Path | None = None  # set by pdd.models.weights when a checkpoint is loaded
        drop_path = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        ssm_kwargs = dict(d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank)
        self.patch_embed = PatchEmbed(in_chans, dims[0], patch_size)
        self.layers = nn.ModuleList(
            VMambaStage(
                dims[i],
                depth,
                drop_path[sum(depths[:i]) :],
                downsample=i < len(depths) - 1,
                **ssm_kwargs,
            )
            for i, depth in enumerate(depths)
        )
        self.apply(_init_linear_and_norm)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm-style description of the taps of `forward_features`: channels, stride and module name."""
        info, reduction = [], self.patch_size
        for i, dim in enumerate(self.dims):
            merged = i < len(self.dims) - 1
            reduction *= 2 if merged else 1
            info.append({"num_chs": 2 * dim if merged else dim, "reduction": reduction, "module": f"layers.{i}"})
        return info

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One B×C×H×W map per stage, after that stage's blocks and patch merging (no final norm).

        Each map is a `permute` view of the stage's (B, H, W, C) output, i.e. a channels_last tensor, as
        the authors' `VSSM.forward` returns it: no copy, and the convolutions and train-mode BN of the
        students that read it round exactly as they do in the authors' code (a contiguous copy makes
        oneDNN pick other kernels: ~1e-7, amplified to ~1e-5 by BN; ../shared/reference).
        """
        x = self.patch_embed(x)
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x.permute(0, 3, 1, 2))
        return features

    forward = forward_features

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load official v0 names or PDD's renamed copy; the unused classifier keys are dropped."""
        return super().load_state_dict(checkpoint_to_vmamba_state_dict(state_dict), strict=strict, assign=assign)


def checkpoint_to_vmamba_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A VMamba checkpoint in any known layout -> this module's state dict.

    Unwraps `{"model": ...}`, renames PDD-style keys to the official v0 names, and drops the
    ImageNet classifier (`norm.*`, `head.*`), which the feature extractor does not have.
    """
    if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
        checkpoint = checkpoint["model"]
    state_dict = {}
    for key, value in checkpoint.items():
        for pattern, replacement in PDD_TO_CHECKPOINT_NAMES:
            key = re.sub(pattern, replacement, key)
        if key not in CLASSIFIER_KEYS:
            state_dict[key] = value
    return state_dict


def vmamba_tiny(pretrained: bool = False, weights: str | None = None, **overrides: Any) -> VMamba:
    """VMamba-Tiny (v0) as PDD's teacher. `weights` (a file) or `pretrained=True` (cache, then download)
    loads the ImageNet checkpoint strictly; use it frozen: `model.eval()` and `torch.no_grad()`."""
    model = VMamba(**{**VMAMBA_TINY_CONFIG, **overrides})
    if pretrained or weights is not None:
        from pdd.models.weights import load_vmamba_weights

        load_vmamba_weights(model, weights)
    return model


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
