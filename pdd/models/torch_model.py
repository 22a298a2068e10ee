"""`PDDModel`: frozen teachers, a neck that makes targets and a code, optional MPA priors, one or two students.

All five architectures of the paper's Table 3 are options of this one class (`PDDOptions.variant`):

=======  ===========================  ==============================  ==================
variant  teachers / neck               students (paths)                loss terms
=======  ===========================  ==============================  ==================
M1       WRN50 L1-3 / RD4AD OCBE       plain de-wide-ResNet50          RD4AD 1-cos (L_kr)
M2       WRN50 L1-3 / RD4AD OCBE       prior (MPA from the OCBE code)  RD4AD 1-cos (L_kr)
M3       WRN50 + VMamba / InA + MMU    plain                           L_kr
M4       WRN50 + VMamba / InA + MMU    prior                           L_prp
full     WRN50 + VMamba / InA + MMU    prior and plain                 L_kr, L_prp, L_div
=======  ===========================  ==============================  ==================
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from pdd.errors import ConfigError
from pdd.models.adapters import ManifoldPriorAffine, TeacherFusion
from pdd.models.anomaly_map import AnomalyMapGenerator, ChannelUnits
from pdd.models.decoder import (
    PDD_STUDENT_BLOCKS,
    RD4AD_STUDENT_BLOCKS,
    DeResNetDecoder,
    OneClassBottleneck,
    init_official_,
)
from pdd.models.loss import PDDLoss
from pdd.models.options import Fidelity, PDDOptions, Scoring, Variant
from pdd.models.teachers import Teachers


class DistillationOutputs(NamedTuple):
    """Targets and each student path's maps, all ordered like the levels (1/4, 1/8, 1/16 of the input)."""

    targets: list[torch.Tensor]
    students: dict[str, list[torch.Tensor]]


class PDDModel(nn.Module):
    """One PDD architecture; see docs/architecture.md for the contract the engine relies on."""

    def __init__(self, options: PDDOptions) -> None:
        super().__init__()
        self.options = options
        variant = options.variant
        self.teachers = Teachers(options)
        # Every width below comes from the teachers' feature_info; the targets are wide-ResNet's R1..R3.
        wrn_channels = self.teachers.wrn50.channels
        target_channels = wrn_channels[:3]
        if variant.uses_vmamba:
            self.neck: nn.Module = TeacherFusion(self.teachers.vmamba.channels, wrn_channels)
            blocks = PDD_STUDENT_BLOCKS
        else:
            self.neck = OneClassBottleneck(target_channels)
            blocks = RD4AD_STUDENT_BLOCKS
        code_channels = self.neck.code_channels
        # The priors are added to the inputs of the students' 2nd and 3rd stages: R3's and R2's widths.
        prior_channels = (target_channels[2], target_channels[1])
        self.mpa = ManifoldPriorAffine(code_channels, prior_channels) if variant.uses_priors else None
        # With shared students (the released code) both paths run the same decoder.
        distinct = 1 if options.shared_students else len(variant.student_paths)
        self.students = nn.ModuleList(
            DeResNetDecoder(blocks, code_channels, target_channels) for _ in range(distinct)
        )
        for module in self.trainable_modules():
            init_official_(module)
            if variant.uses_vmamba:
                # VMamba's taps are channels_last views (the authors' layout), so the fused features, and with
                # them every conv and BN of the neck, MPA and students, already run channels_last. Weights in
                # that layout too change no bit of the losses or gradients (tests/models/test_pdd_model.py) and
                # make the training step ~1.2x faster (benchmarks/README.md). M1/M2 read wide-ResNet's
                # contiguous maps and keep RD4AD's layout, and with it its numerics.
                module.to(memory_format=torch.channels_last)
        self.criterion = PDDLoss(options)
        self.anomaly_maps = AnomalyMapGenerator(sigma=options.map_sigma)

    @property
    def variant(self) -> Variant:
        return self.options.variant

    def trainable_modules(self) -> Iterator[nn.Module]:
        yield self.neck
        if self.mpa is not None:
            yield self.mpa
        yield from self.students

    def student_parameters(self) -> list[nn.Parameter]:
        """Everything the optimizer updates: neck (adapters or OCBE), MPA and students; never the teachers."""
        return [p for module in self.trainable_modules() for p in module.parameters()]

    def student(self, path: str) -> DeResNetDecoder:
        index = self.variant.student_paths.index(path)
        return self.students[index % len(self.students)]

    def teacher_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The frozen teachers' named features (`R1..R4`, `Z0..Z3`): deterministic, gradient-free, cacheable."""
        return self.teachers(x)

    def distill(self, features: dict[str, torch.Tensor]) -> DistillationOutputs:
        """Targets and student outputs from (possibly cached) teacher features."""
        targets, code = self.neck(features)
        priors = self.mpa(code) if self.mpa is not None else None
        students = {
            path: self.student(path)(code, priors if path == "prior" else None) for path in self.variant.student_paths
        }
        return DistillationOutputs(targets, students)

    def forward(self, x: torch.Tensor) -> DistillationOutputs:
        return self.distill(self.teacher_features(x))

    def loss_from_features(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named loss terms (`L_kr`, `L_prp`, `L_div`, whichever the variant has) and their weighted `total`."""
        outputs = self.distill(features)
        return self.criterion(outputs.students, outputs.targets)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss_from_features(self.teacher_features(x))

    def supports_scoring(self, scoring: str) -> bool:
        """`ts` (students vs targets) always; `ss` (student vs student) only with two students."""
        return scoring in self.variant.scorings

    @torch.no_grad()
    def anomaly_map(
        self,
        x: torch.Tensor | None,
        scoring: str = Scoring.TS.value,
        features: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Smoothed B x H x W anomaly maps at the input size and their image scores (max).

        `ts` sums 1 - cos(student, target) over levels and student paths; `ss` sums 1 - cos(prior, plain).
        With cached `features`, `x` may be None: the input size is then 4x the size of R1.
        """
        return self.anomaly_maps_for(x, [scoring], features)[scoring]

    @torch.no_grad()
    def anomaly_maps_for(
        self,
        x: torch.Tensor | None,
        scorings: Sequence[str],
        features: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """`anomaly_map` for each of `scorings`, from one pass of the students (evaluation scores both)."""
        for scoring in scorings:
            if not self.supports_scoring(scoring):
                raise ConfigError(
                    f"scoring {scoring!r} is not available for variant {self.variant.value}: "
                    f"use one of {[s.value for s in self.variant.scorings]}"
                )
        if features is None:
            if x is None:
                raise ValueError("anomaly_map needs an input batch or its teacher features")
            features = self.teacher_features(x)
        image_size = tuple(x.shape[-2:]) if x is not None else tuple(4 * s for s in features["R1"].shape[-2:])
        outputs = self.distill(features)
        units = ChannelUnits()  # each map normalised once for every pair and scoring it is in
        results = {}
        for scoring in scorings:
            if scoring == Scoring.TS:
                pairs = [
                    (student, target)
                    for maps in outputs.students.values()
                    for student, target in zip(maps, outputs.targets, strict=True)
                ]
            else:
                pairs = list(zip(outputs.students["prior"], outputs.students["plain"], strict=True))
            results[scoring] = self.anomaly_maps(pairs, image_size, units)
        return results

    def teacher_fingerprint(self) -> dict[str, Any]:
        """Teacher identities (names, weights sha256 or random-init + seed): the provenance and cache key."""
        return self.teachers.fingerprint()


def build_pdd(
    variant: str | Variant = Variant.FULL, fidelity: str | Fidelity = Fidelity.CODE, pretrained: bool = False,
    **overrides: Any,
) -> PDDModel:
    """Build a PDD architecture; `overrides` are `PDDOptions` fields (docs/model.md lists them)."""
    return PDDModel(PDDOptions.resolve(variant, fidelity, pretrained=pretrained, **overrides))
