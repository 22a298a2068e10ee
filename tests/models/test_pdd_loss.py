"""Loss terms on small hand-made tensors, checked against values computed here from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdd.models.loss import (
    PDDLoss,
    diversity_loss,
    knowledge_reconstruction_loss,
    prior_reconstruction_loss,
    reverse_distillation_loss,
    sample_cosine,
)
from pdd.errors import ConfigError
from pdd.models.options import PDDOptions, Variant


def unit_pair(cos: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 1x2x1x1 maps whose (global and local) cosine similarity is exactly `cos`."""
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    b = torch.tensor([cos, math.sqrt(1.0 - cos**2)]).view(1, 2, 1, 1)
    return a, b


def np_cos(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


@pytest.fixture
def levels() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(2, 4, 6, 6), (2, 8, 3, 3), (2, 16, 2, 2)]
    a = [torch.randn(s, generator=gen) for s in shapes]
    b = [torch.randn(s, generator=gen) + 0.5 * x for s, x in zip(shapes, a)]
    return a, b


def test_sample_cosine_global_and_local(levels):
    a, b = levels[0][0], levels[1][0]
    an, bn = a.numpy(), b.numpy()
    expected_global = [np_cos(an[i].ravel(), bn[i].ravel()) for i in range(2)]
    expected_local = [
        np.mean([np_cos(an[i, :, y, x], bn[i, :, y, x]) for y in range(6) for x in range(6)]) for i in range(2)
    ]
    assert sample_cosine(a, b, "global").tolist() == pytest.approx(expected_global, abs=1e-6)
    assert sample_cosine(a, b, "local").tolist() == pytest.approx(expected_local, abs=1e-6)
    assert expected_global != pytest.approx(expected_local, abs=1e-3)  # the switch matters


def test_knowledge_reconstruction_is_summed_elementwise_mse(levels):
    a, b = levels
    expected = sum(np.mean((x.numpy() - y.numpy()) ** 2) for x, y in zip(a, b))
    assert knowledge_reconstruction_loss(a, b).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cos_sign", [+1, -1])
@pytest.mark.parametrize("cosine", ["global", "local"])
def test_prior_reconstruction(levels, cos_sign, cosine):
    a, b = levels
    expected = 0.0
    for x, y in zip(a, b):
        cos = sample_cosine(x, y, cosine).mean().item()
        expected += 1.5 * np.mean((x.numpy() - y.numpy()) ** 2) + 0.7 * (cos if cos_sign > 0 else 1 - cos)
    got = prior_reconstruction_loss(a, b, alpha=1.5, beta=0.7, cosine=cosine, cos_sign=cos_sign)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("cos_sign, direction", [(+1, "apart"), (-1, "together")])
def test_prior_cosine_term_gradient_direction(cos_sign, direction):
    """Code (+cos) pushes the prior student away from the target; the paper (1 - cos) pulls it closer."""
    target, student = unit_pair(0.5)
    student = student.clone().requires_grad_(True)
    loss = prior_reconstruction_loss([student], [target], alpha=0.0, beta=1.0, cosine="global", cos_sign=cos_sign)
    loss.backward()
    with torch.no_grad():
        moved = student - 0.1 * student.grad
    new_cos = sample_cosine(moved, target, "global").item()
    assert (new_cos < 0.5) if direction == "apart" else (new_cos > 0.5)


@pytest.mark.parametrize(
    "cosines, tau_low, tau_high, expected",
    [
        # low level above tau_low is pushed apart; high levels above tau_high pay nothing
        ((0.9, 0.5, 0.4), 0.75, 0.30, 0.15),
        # low level below tau_low pays nothing; high levels below tau_high are pulled together
        ((0.5, 0.2, 0.1), 0.75, 0.30, 0.1 + 0.2),
        # the paper's thresholds on the same similarities
        ((0.5, 0.2, 0.1), 0.30, 0.75, 0.2 + 0.55 + 0.65),
        # exactly at the thresholds: the hinge is zero on both sides
        ((0.75, 0.3, 0.3), 0.75, 0.30, 0.0),
    ],
)
def test_diversity_hinges(cosines, tau_low, tau_high, expected):
    pairs = [unit_pair(c) for c in cosines]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    for cosine in ("global", "local"):
        got = diversity_loss(a, b, tau_low, tau_high, low_dim_layers=1, cosine=cosine)
        assert got.item() == pytest.approx(expected, abs=1e-6)


def test_diversity_low_dim_layers_and_batch_mean():
    # two samples per level: per-sample hinges are averaged over the batch
    levels_a, levels_b = [], []
    for cos_pair in ((0.9, 0.7), (0.9, 0.1), (0.2, 0.8)):
        pairs = [unit_pair(c) for c in cos_pair]
        levels_a.append(torch.cat([p[0] for p in pairs]))
        levels_b.append(torch.cat([p[1] for p in pairs]))
    tau_low, tau_high = 0.6, 0.5
    expected_one = np.mean([0.3, 0.1]) + np.mean([0.0, 0.4]) + np.mean([0.3, 0.0])
    expected_two = np.mean([0.3, 0.1]) + np.mean([0.3, 0.0]) + np.mean([0.3, 0.0])
    got_one = diversity_loss(levels_a, levels_b, tau_low, tau_high, low_dim_layers=1, cosine="global")
    got_two = diversity_loss(levels_a, levels_b, tau_low, tau_high, low_dim_layers=2, cosine="global")
    assert got_one.item() == pytest.approx(expected_one, abs=1e-6)
    assert got_two.item() == pytest.approx(expected_two, abs=1e-6)


def test_reverse_distillation_loss(levels):
    a, b = levels
    for cosine in ("global", "local"):
        expected = sum(np.mean(1 - sample_cosine(x, y, cosine).numpy()) for x, y in zip(a, b))
        assert reverse_distillation_loss(a, b, cosine).item() == pytest.approx(expected, rel=1e-6)


def test_full_code_objective_matches_the_released_formula(levels):
    """0.02*sum MSE(SA,T) + 0.05*sum cos_flat(SA,T) + 0.02*sum MSE(T,SB) + 0.5*Div(0.75 low, 0.30 high)."""
    targets, prior = levels
    gen = torch.Generator().manual_seed(1)
    plain = [t + 0.3 * torch.randn(t.shape, generator=gen) for t in targets]

    def flat_cos(x, y):
        x, y = x.flatten(1).double(), y.flatten(1).double()
        return ((x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1))).numpy()

    mse = lambda x, y: np.mean((x.double().numpy() - y.double().numpy()) ** 2)  # noqa: E731
    div = np.mean(np.maximum(0.0, flat_cos(prior[0], plain[0]) - 0.75))
    div += sum(np.mean(np.maximum(0.0, 0.30 - flat_cos(p, q))) for p, q in zip(prior[1:], plain[1:]))
    expected = (
        0.02 * sum(mse(s, t) for s, t in zip(prior, targets))
        + 0.05 * sum(np.mean(flat_cos(s, t)) for s, t in zip(prior, targets))
        + 0.02 * sum(mse(t, s) for s, t in zip(plain, targets))
        + 0.5 * div
    )
    terms = PDDLoss(PDDOptions.resolve("full", "code"))({"prior": prior, "plain": plain}, targets)
    assert set(terms) == {"L_kr", "L_prp", "L_div", "total"}
    assert terms["total"].item() == pytest.approx(expected, rel=1e-5)


def test_paper_objective_and_omitted_terms(levels):
    targets, prior = levels
    options = PDDOptions.resolve("M4", "paper", lambda_prp=2.0)
    terms = PDDLoss(options)({"prior": prior}, targets)
    assert set(terms) == {"L_prp", "total"}
    expected = sum(
        1.0 * np.mean((s.numpy() - t.numpy()) ** 2) + 2.5 * np.mean(1 - sample_cosine(s, t, "local").numpy())
        for s, t in zip(prior, targets)
    )
    assert terms["total"].item() == pytest.approx(2.0 * expected, rel=1e-5)


def test_detach_targets_stops_target_gradients(levels):
    targets = [t.clone().requires_grad_(True) for t in levels[0]]
    students = [s.clone().requires_grad_(True) for s in levels[1]]
    for detach in (False, True):
        options = PDDOptions.resolve("M3", "code", detach_targets=detach)
        PDDLoss(options)({"plain": students}, targets)["total"].backward()
        assert all((t.grad is None) == detach for t in targets)
        for t in targets:
            t.grad = None


def _official_mode_case() -> tuple[dict[str, list[torch.Tensor]], list[torch.Tensor]]:
    """Three 1x2x1x1 levels: prior SA, plain SB and targets T, with hand-computable MSEs and cosines."""
    def level(*vectors):
        return [torch.tensor(v).view(1, 2, 1, 1) for v in vectors]

    prior = level([1.0, 0.0], [0.0, 2.0], [3.0, 4.0])
    plain = level([-1.0, 0.0], [0.0, 3.0], [3.0, 4.0])
    targets = level([1.0, 1.0], [0.0, 1.0], [0.0, 4.0])
    return {"prior": prior, "plain": plain}, targets


def test_official_layerloss_1_is_the_prior_students_mse_alone():
    students, targets = _official_mode_case()
    terms = PDDLoss(PDDOptions.resolve("full", "code", layerloss=1))(students, targets)
    # MSE(SA, T) per level: (0 + 1)/2, (0 + 1)/2, (9 + 0)/2
    assert set(terms) == {"L_prp", "total"}
    assert terms["L_prp"].item() == pytest.approx(5.5)
    assert terms["total"].item() == pytest.approx(0.02 * 5.5)


def test_official_layerloss_2_penalises_the_students_cosine_without_thresholds():
    students, targets = _official_mode_case()
    terms = PDDLoss(PDDOptions.resolve("full", "code", layerloss=2))(students, targets)
    # cos(SA, SB) per level: -1, 1, 1 (the 1/16 pair is identical, as with the shared decoder)
    assert terms["L_div"].item() == pytest.approx(1.0)
    # L_kr = MSE(SB, T): (4 + 1)/2 + (0 + 4)/2 + 9/2; L_prp = MSE(SA, T) + 2.5 cos(SA, T) with cos 1/sqrt(2), 1, 0.8
    assert terms["L_kr"].item() == pytest.approx(9.0)
    assert terms["L_prp"].item() == pytest.approx(5.5 + 2.5 * (1 / math.sqrt(2) + 1.0 + 0.8))
    assert terms["total"].item() == pytest.approx(0.02 * 9.0 + 0.02 * 11.767767 + 0.5 * 1.0)
    # the released default hinges the same cosines at 0.75 (level 1/4) and 0.30 (the others): nothing to pay
    final = PDDLoss(PDDOptions.resolve("full", "code"))(students, targets)
    assert final["L_div"].item() == 0.0 and final["L_kr"].item() == terms["L_kr"].item()


def test_official_layerloss_modes_need_the_two_student_model():
    with pytest.raises(ConfigError, match="needs variant 'full'"):
        PDDOptions.resolve("M4", "code", layerloss=1)
    with pytest.raises(ConfigError, match="layerloss must be one of"):
        PDDOptions.resolve("full", "code", layerloss=3)  # crashes in the official script (outputs[9:12])


# A value of each tunable option other than every architecture's `code` default, chosen so that each loss term it
# enters is active on the maps below (students' cosine ~0.95: above τ_low, above τ_high)
OTHER_VALUES = {"prp_cos_sign": -1, "tau_low": 0.0, "tau_high": 1.0, "low_dim_layers": 3, "cosine": "local",
                "detach_targets": True, "layerloss": 2, "alpha": 2.0, "beta": 1.0, "lambda_kr": 0.5,
                "lambda_prp": 0.5, "lambda_div": 0.1}


@pytest.mark.parametrize("variant", list(Variant))
def test_an_architecture_reads_exactly_the_options_it_declares(variant, levels):
    """`Variant.options_read` (what `pdd params check` lets a variant override) against the loss: changing an
    option it declares changes the loss or a gradient, changing any other changes neither."""
    students_a, targets = levels
    gen = torch.Generator().manual_seed(1)
    paths = {"prior": students_a, "plain": [x + 0.3 * torch.randn(x.shape, generator=gen) for x in students_a]}

    def outcome(**option):
        # M1/M2's targets are the frozen teacher's features: no gradient to detach
        leaves = {f"{path}{i}": x.clone().requires_grad_(True) for path in variant.student_paths
                  for i, x in enumerate(paths[path])}
        leaves |= {f"T{i}": t.clone().requires_grad_(variant.uses_vmamba) for i, t in enumerate(targets)}
        terms = PDDLoss(PDDOptions.resolve(variant, "code", **option))(
            {path: [leaves[f"{path}{i}"] for i in range(3)] for path in variant.student_paths},
            [leaves[f"T{i}"] for i in range(3)])
        trainable = [leaf for leaf in leaves.values() if leaf.requires_grad]
        return [terms["total"], *torch.autograd.grad(terms["total"], trainable, allow_unused=True)]

    def differs(first, second) -> bool:
        return any((x is None) != (y is None) or (x is not None and not torch.equal(x, y))
                   for x, y in zip(first, second))

    base = outcome()
    for name, value in OTHER_VALUES.items():
        if name == "layerloss" and variant is not Variant.FULL:
            with pytest.raises(ConfigError, match="needs variant 'full'"):
                PDDOptions.resolve(variant, "code", layerloss=value)
            assert name not in variant.options_read
            continue
        assert differs(base, outcome(**{name: value})) == (name in variant.options_read), name
    # the one option the model, not the loss, reads: whether two student paths share one decoder
    assert ("shared_students" in variant.options_read) == (len(variant.student_paths) == 2)
    assert variant.options_read <= set(PDDOptions.tunable_fields())
