"""PDD losses (paper eqs. 5, 7, 8) and RD4AD's, each readable as the paper writes it or as the code computes it.

Every function takes lists of feature maps ordered like the levels (highest resolution first), sums over the
levels and averages over the batch. The mean squared error is a per-element mean in both readings (the
weights 0.02/0.02/0.5 only make sense for it; pdd_official_code.md §2.2 item 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdd.models.options import Cosine, LayerLoss, PDDOptions
from pdd.ops.fused_loss import global_cosine_similarity, mse_loss

Levels = Sequence[torch.Tensor]


def sample_cosine(a: torch.Tensor, b: torch.Tensor, cosine: Cosine | str) -> torch.Tensor:
    """One cosine similarity per sample (shape B): over the flattened C*H*W vector (`global`, in fused
    passes that are bit-identical to F.cosine_similarity's), or per position along channels then averaged
    over positions (`local`)."""
    if Cosine(cosine) is Cosine.GLOBAL:
        return global_cosine_similarity(a, b, eps=1e-8)
    return F.cosine_similarity(a, b, dim=1, eps=1e-8).flatten(1).mean(dim=1)


def knowledge_reconstruction_loss(students: Levels, targets: Levels) -> torch.Tensor:
    """L_kr (eq. 5): sum over levels of the MSE between the plain student and the fused targets."""
    return sum(mse_loss(s, t) for s, t in zip(students, targets, strict=True))


def prior_reconstruction_loss(
    students: Levels,
    targets: Levels,
    alpha: float,
    beta: float,
    cosine: Cosine | str,
    cos_sign: int,
) -> torch.Tensor:
    """L_prp (eq. 7): sum over levels of alpha*MSE + beta*(cosine term).

    The cosine term is 1 - cos with `cos_sign=-1` (the paper) and +cos with `cos_sign=+1` (the released code,
    which thereby pushes the prior student's direction *away* from the target).
    """
    total = 0.0
    for s, t in zip(students, targets, strict=True):
        cos = sample_cosine(s, t, cosine).mean()
        cos_term = cos if cos_sign > 0 else 1.0 - cos
        total = total + alpha * mse_loss(s, t) + beta * cos_term
    return total


def diversity_loss(
    students_a: Levels,
    students_b: Levels,
    tau_low: float,
    tau_high: float,
    low_dim_layers: int,
    cosine: Cosine | str,
) -> torch.Tensor:
    """L_div (eq. 8): hinge on the students' cosine similarity, per sample, averaged over the batch.

    The first `low_dim_layers` levels pay max(0, cos - tau_low) (pushed apart above tau_low); the others pay
    max(0, tau_high - cos) (pulled together below tau_high), which is eq. 8's -min(0, cos - tau_high).
    """
    total = 0.0
    for level, (a, b) in enumerate(zip(students_a, students_b, strict=True)):
        cos = sample_cosine(a, b, cosine)
        hinge = F.relu(cos - tau_low) if level < low_dim_layers else F.relu(tau_high - cos)
        total = total + hinge.mean()
    return total


def unthresholded_diversity_loss(students_a: Levels, students_b: Levels, cosine: Cosine | str) -> torch.Tensor:
    """The official `--layerloss 2` diversity term: sum over levels of the batch mean of cos(SA, SB), with no
    threshold, so it always pushes the students apart (and is negative once they point away from each other).
    At 1/16 the shared decoder makes the cosine exactly 1 (SA16 = SB16): a constant with no gradient."""
    return sum(sample_cosine(a, b, cosine).mean() for a, b in zip(students_a, students_b, strict=True))


def reverse_distillation_loss(students: Levels, targets: Levels, cosine: Cosine | str) -> torch.Tensor:
    """RD4AD's loss: sum over levels of the batch mean of 1 - cos (per position and averaged with `local`,
    as in the RD4AD paper eq. 3; over the flattened map with `global`, as in its released code)."""
    return sum((1.0 - sample_cosine(s, t, cosine)).mean() for s, t in zip(students, targets, strict=True))


class PDDLoss(nn.Module):
    """The weighted objective of a variant (eq. 9): returns each present term and their weighted `total`.

    `students` maps a path (`prior` / `plain`) to its three maps. With one student (M1-M4) only that student's
    term is present: L_kr for the plain path, L_prp for the prior path, RD4AD's loss (named L_kr) for M1/M2.
    The official `--layerloss` modes (`options.layerloss`): 1 keeps only L_prp's MSE, 2 replaces L_div by
    `unthresholded_diversity_loss`.
    """

    def __init__(self, options: PDDOptions) -> None:
        super().__init__()
        self.options = options

    def forward(self, students: dict[str, Levels], targets: Levels) -> dict[str, torch.Tensor]:
        o = self.options
        if o.detach_targets:
            targets = [t.detach() for t in targets]
        terms: dict[str, torch.Tensor] = {}
        if not o.variant.uses_vmamba:
            (path,) = students
            terms["L_kr"] = reverse_distillation_loss(students[path], targets, o.cosine)
        elif o.layerloss is LayerLoss.PRIOR_MSE:
            # both paths ran (BN statistics, anomaly map); only the prior path's MSE is minimised
            terms["L_prp"] = o.alpha * knowledge_reconstruction_loss(students["prior"], targets)
        else:
            if "plain" in students:
                terms["L_kr"] = knowledge_reconstruction_loss(students["plain"], targets)
            if "prior" in students:
                terms["L_prp"] = prior_reconstruction_loss(
                    students["prior"], targets, o.alpha, o.beta, o.cosine, o.prp_cos_sign
                )
            if len(students) == 2 and o.layerloss is LayerLoss.UNTHRESHOLDED_DIVERSITY:
                terms["L_div"] = unthresholded_diversity_loss(students["prior"], students["plain"], o.cosine)
            elif len(students) == 2:
                terms["L_div"] = diversity_loss(
                    students["prior"], students["plain"], o.tau_low, o.tau_high, o.low_dim_layers, o.cosine
                )
        weights = {"L_kr": o.lambda_kr, "L_prp": o.lambda_prp, "L_div": o.lambda_div}
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms
