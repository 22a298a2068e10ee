"""Student decoders (reverse-distillation "de-ResNets") and RD4AD's one-class bottleneck.

One `DeResNetDecoder` class serves every variant: PDD's student is 3 stages x 2 blocks (pdd_official_code.md
§1.6), RD4AD's de-wide-ResNet50 is the same stage design with [3, 4, 6] blocks. Both start from a code at 1/32
of the input and give three maps at 1/16, 1/8 and 1/4 with the widths of the teacher's targets (for the
wide-ResNet50-2 teacher: 2048 channels in, 1024, 512 and 256 out). Every width comes from the caller, which
takes it from the teachers' feature_info.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from pdd.ops.transposed_conv import ConvTranspose2x2

PDD_STUDENT_BLOCKS = (2, 2, 2)
RD4AD_STUDENT_BLOCKS = (3, 4, 6)
WIDE_BASE_WIDTH = 128  # the "wide" in wide-ResNet50-2: bottleneck widths 512, 256, 128


def init_official_(module: nn.Module) -> None:
    """The authors' init (also RD4AD's): Kaiming-normal fan_out on every Conv2d, BN weight 1 and bias 0.

    ConvTranspose2d is not a Conv2d subclass and keeps PyTorch's default init, as in the released code.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DeBottleneck(nn.Module):
    """A ResNet bottleneck run backwards: 1x1 -> (2x2/2 transposed conv | 3x3) -> 1x1, each with BN, no biases.

    The transposed convolutions are `ConvTranspose2x2`: nn.ConvTranspose2d with a faster CPU weight gradient.

    An upsampling block doubles the resolution and carries a transposed-conv + BN shortcut; the others keep
    an identity shortcut.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, upsample: bool, base_width: int = WIDE_BASE_WIDTH) -> None:
        super().__init__()
        width = planes * base_width // 64
        out_channels = planes * self.expansion
        middle = (
            ConvTranspose2x2(width, width)
            if upsample
            else nn.Conv2d(width, width, 3, padding=1, bias=False)
        )
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            middle,
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if upsample:
            self.shortcut: nn.Module = nn.Sequential(
                ConvTranspose2x2(in_channels, out_channels), nn.BatchNorm2d(out_channels)
            )
        elif in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            raise ValueError(f"a non-upsampling block needs in == out channels, got {in_channels} -> {out_channels}")
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class DeResNetDecoder(nn.Module):
    """Three upsampling stages; `forward` optionally adds a prior before stages 2 and 3 (the MPA injection).

    `out_channels` are the widths of the maps it returns, highest resolution first (those of the targets).
    """

    def __init__(self, blocks_per_stage: Sequence[int], in_channels: int, out_channels: Sequence[int]) -> None:
        super().__init__()
        stages = []
        for width, blocks in zip(reversed(out_channels), blocks_per_stage, strict=True):
            planes = width // DeBottleneck.expansion
            layers = [DeBottleneck(in_channels, planes, upsample=True)]
            in_channels = planes * DeBottleneck.expansion
            layers += [DeBottleneck(in_channels, planes, upsample=False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, code: torch.Tensor, priors: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Stage outputs, highest resolution first (the order of the targets); priors are (P@1/16, P@1/8)."""
        outputs = []
        x = code
        for index, stage in enumerate(self.stages):
            if index > 0 and priors is not None:
                x = x + priors[index - 1]
            x = stage(x)
            outputs.append(x)
        return outputs[::-1]


def _conv3x3_bn_relu(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class OneClassBottleneck(nn.Module):
    """RD4AD's OCBE: multi-scale feature fusion of R1..R3, then a one-class embedding to 2048 channels at 1/32.

    Fusion brings R1 and R2 to R3's size and width with strided 3x3 convs and concatenates the three; the
    embedding is one ResNet layer of 3 wide Bottlenecks, the first with stride 2. `channels` are R1..R3's widths.
    """

    def __init__(self, channels: Sequence[int], planes: int = 512, blocks: int = 3) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.from_level1 = nn.Sequential(*_conv3x3_bn_relu(c1, c2, 2), *_conv3x3_bn_relu(c2, c3, 2))
        self.from_level2 = nn.Sequential(*_conv3x3_bn_relu(c2, c3, 2))
        fused = 3 * c3
        out_channels = planes * Bottleneck.expansion
        self.code_channels = out_channels
        downsample = nn.Sequential(
            nn.Conv2d(fused, out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(out_channels)
        )
        self.embed = nn.Sequential(
            Bottleneck(fused, planes, stride=2, downsample=downsample, base_width=WIDE_BASE_WIDTH),
            *(Bottleneck(out_channels, planes, base_width=WIDE_BASE_WIDTH) for _ in range(blocks - 1)),
        )

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The targets (the teacher's R1..R3 themselves) and the code the student decodes."""
        targets = [features["R1"], features["R2"], features["R3"]]
        r1, r2, r3 = targets
        return targets, self.embed(torch.cat([self.from_level1(r1), self.from_level2(r2), r3], dim=1))
