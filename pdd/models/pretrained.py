"""The teachers' pretrained files: the one place their names, download URLs and sha256 pins are written.

`params.yaml` says where each file lives (`teachers.<name>.file`); its `url` and `sha256` default to the
pins here (`pdd params show` prints them resolved, and the weights jobs' fingerprints cover them), and are
set in params only to use another copy on purpose. `pdd.models.weights` downloads and verifies against the
same pins. Torch-free, so that validating params stays light.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightsSpec:
    """One downloadable weights file. `sha256` may be a prefix (torch-hub file names carry 8 hex digits);
    `pinned_by` names the setting that pins it (e.g. ``teachers.vmamba.sha256``), for messages."""

    name: str
    filename: str
    url: str | None
    sha256: str | None = None
    note: str = ""
    pinned_by: str | None = None


VMAMBA_TINY_WEIGHTS = WeightsSpec(
    name="VMamba-Tiny v0 (ImageNet-1k, top-1 82.2)",
    filename="vssmtiny_dp01_ckpt_epoch_292.pth",
    url="https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmtiny_dp01_ckpt_epoch_292.pth",
    sha256="dbc0cc4f5ec0e45db5fba7c939d2c7d9b617e891ac10766912a8d604c37c5e47",
    note="sha256 as reported by a third-party runbook (91,649,482 bytes), not yet verified against the release",
)


def _timm_hub_file(tag: str, url: str) -> WeightsSpec:
    """timm's pretrained file for `wide_resnet50_2.<tag>`; its name carries the first 8 hex digits of its sha256."""
    filename = url.rsplit("/", 1)[-1]
    return WeightsSpec(name=f"wide_resnet50_2.{tag}", filename=filename, url=url,
                       sha256=filename.rsplit("-", 1)[-1].split(".")[0])


# timm's bare name `wide_resnet50_2` resolves to `racm_in1k`, the weights PDD's code loads; `tv_in1k` are
# torchvision's original weights (what RD4AD used). The URLs are timm's pretrained configs'
# (tests/models/test_weights.py checks them against the installed timm).
WRN50_WEIGHTS = {
    "racm_in1k": _timm_hub_file("racm_in1k", "https://github.com/rwightman/pytorch-image-models/releases/download/"
                                             "v0.1-weights/wide_resnet50_racm-8234f177.pth"),
    "tv_in1k": _timm_hub_file("tv_in1k", "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth"),
}
WRN50_TAGS = tuple(WRN50_WEIGHTS)
