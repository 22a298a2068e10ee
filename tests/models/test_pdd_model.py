"""PDDModel: every variant trains and scores, teachers stay frozen, shapes and sizes match the released code."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pdd.errors import ConfigError
from pdd.models import adapters
from pdd.models import loss as loss_module
from pdd.models.options import PDDOptions, Variant
from pdd.models.teachers import Teachers
from pdd.ops import transposed_conv
from pdd.ops.transposed_conv import ConvTranspose2x2

from .conftest import FIDELITIES, TINY_VMAMBA, VARIANTS

EXPECTED_TERMS = {"M1": {"L_kr"}, "M2": {"L_kr"}, "M3": {"L_kr"}, "M4": {"L_prp"}, "full": {"L_kr", "L_prp", "L_div"}}


def train_steps(model, features, steps: int = 2) -> tuple[list[float], dict[str, torch.Tensor]]:
    model.train()
    optimizer = torch.optim.Adam(model.student_parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(steps):
        terms = model.loss_from_features(features)
        losses.append(terms["total"].item())
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    terms = model.loss_from_features(features)
    losses.append(terms["total"].item())
    return losses, terms


def assert_map_follows_a_feature_disagreement(model, features) -> None:
    """A region of the shallowest teacher feature, flipped in sign (post-ReLU students now point away from
    it), must raise the map in the matching input region and the image score."""
    maps, scores = model.anomaly_map(None, "ts", features=features)
    perturbed = dict(features)
    r1 = features["R1"].clone()
    r1[:, :, 10:14, 2:6] *= -4.0  # input rows 40-55, cols 8-23
    perturbed["R1"] = r1
    new_maps, new_scores = model.anomaly_map(None, "ts", features=perturbed)
    assert (new_scores > scores).all()
    rise = new_maps - maps
    assert rise[:, 40:56, 8:24].mean() > 5 * rise[:, :, 40:].abs().mean()


@pytest.mark.parametrize("fidelity", FIDELITIES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_scores_and_keeps_teachers_frozen(tiny_pdd, images, variant, fidelity):
    model = tiny_pdd(variant, fidelity)
    model.train()
    assert not any(m.training for m in model.teachers.modules())
    assert not any(p.requires_grad for p in model.teachers.parameters())
    assert not {id(p) for p in model.teachers.parameters()} & {id(p) for p in model.student_parameters()}
    before = {k: v.clone() for k, v in model.teachers.state_dict().items()}

    features = model.teacher_features(images)  # trained from like the engine's cache
    assert not any(f.requires_grad for f in features.values())
    losses, terms = train_steps(model, features)
    assert set(terms) == EXPECTED_TERMS[variant] | {"total"}
    assert losses[-1] < losses[0], f"{variant}/{fidelity} did not learn: {losses}"
    assert all(p.grad is None for p in model.teachers.parameters())
    after = model.teachers.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "teacher weights or BN statistics moved"

    model.eval()
    maps, scores = model.anomaly_map(images, "ts")
    assert maps.shape == (2, 64, 64) and scores.shape == (2,)
    assert torch.allclose(scores, maps.flatten(1).amax(1))
    assert model.supports_scoring("ss") is (variant == "full")
    if variant == "full":
        ss_maps, ss_scores = model.anomaly_map(images, "ss", features=features)
        assert ss_maps.shape == (2, 64, 64) and not torch.allclose(ss_maps, maps)
    else:
        with pytest.raises(ConfigError, match="'ts'"):
            model.anomaly_map(images, "ss")
    assert_map_follows_a_feature_disagreement(model, features)


def test_shared_students_make_the_deepest_outputs_identical(tiny_pdd, images):
    code, paper = tiny_pdd("full", "code"), tiny_pdd("full", "paper")
    assert len(code.students) == 1 and len(paper.students) == 2
    for model, identical in ((code, True), (paper, False)):
        out = model.train()(images)
        sa, sb = out.students["prior"], out.students["plain"]
        assert torch.equal(sa[2], sb[2]) is identical  # SA16 vs SB16
        assert not torch.equal(sa[1], sb[1])  # the priors make the paths differ from 32x32 on


def test_released_code_shapes_and_parameter_count_at_256(tiny_pdd):
    """The shape tables of pdd_official_code.md §1 and 30.41 M trainable parameters for full/code.

    VMamba-Tiny's widths with one block per stage: shapes and trainable sizes depend on the widths only."""
    model = tiny_pdd("full", "code", vmamba_dims=(96, 192, 384, 768)).eval()
    sizes = {name: sum(p.numel() for p in module.parameters()) for name, module in model.named_children()}
    assert sizes["students"] == 14_428_160 + 3_609_600 + 903_680
    assert sizes["neck"] == 115_456 + 460_288 + 1_838_080 + 5_380_096
    assert sizes["mpa"] == 3_672_064
    assert sum(p.numel() for p in model.student_parameters()) == pytest.approx(30.41e6, abs=0.05e6)

    features = model.teacher_features(torch.randn(1, 3, 256, 256))
    shapes = {name: tuple(f.shape[1:]) for name, f in features.items()}
    assert shapes == {
        "R1": (256, 64, 64), "R2": (512, 32, 32), "R3": (1024, 16, 16), "R4": (2048, 8, 8),
        "Z0": (192, 32, 32), "Z1": (384, 16, 16), "Z2": (768, 8, 8), "Z3": (768, 8, 8),
    }  # fmt: skip
    with torch.no_grad():
        targets, tail = model.neck(features)
        priors = model.mpa(tail)
        out = model.distill(features)
    level_shapes = [(256, 64, 64), (512, 32, 32), (1024, 16, 16)]
    assert tuple(tail.shape[1:]) == (2048, 8, 8)
    assert [tuple(p.shape[1:]) for p in priors] == [(1024, 16, 16), (512, 32, 32)]
    assert [tuple(t.shape[1:]) for t in out.targets] == level_shapes
    for path in ("prior", "plain"):
        assert [tuple(s.shape[1:]) for s in out.students[path]] == level_shapes


def test_paper_fidelity_has_two_decoders(tiny_pdd):
    sizes = {
        fidelity: sum(p.numel() for p in tiny_pdd("full", fidelity).students.parameters()) for fidelity in FIDELITIES
    }
    assert sizes["paper"] == 2 * sizes["code"]


def test_teacher_init_is_seeded_and_fingerprinted(images):
    options = PDDOptions.resolve("M3", **TINY_VMAMBA)
    a, b = Teachers(options), Teachers(options)
    c = Teachers(PDDOptions.resolve("M3", teacher_seed=1, **TINY_VMAMBA))
    fa, fb, fc = a(images), b(images), c(images)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert not torch.equal(fa["R1"], fc["R1"]) and not torch.equal(fa["Z0"], fc["Z0"])
    fingerprint = a.fingerprint()
    assert fingerprint == b.fingerprint() != c.fingerprint()
    assert fingerprint["wrn50"] == {
        "name": "wide_resnet50_2.racm_in1k", "layers": [1, 2, 3, 4], "weights": "random-init", "seed": 0
    }  # fmt: skip
    assert fingerprint["vmamba"]["weights"] == "random-init" and fingerprint["vmamba"]["dims"] == [8, 16, 32, 64]


def test_options_resolution():
    code, paper = PDDOptions.resolve("full", "code"), PDDOptions.resolve("full", "paper")
    assert (code.tau_low, code.tau_high, code.prp_cos_sign, code.shared_students) == (0.75, 0.30, 1, True)
    assert (paper.tau_low, paper.tau_high, paper.prp_cos_sign, paper.shared_students) == (0.30, 0.75, -1, False)
    assert (code.cosine.value, code.detach_targets) == ("global", False)
    assert (paper.cosine.value, paper.detach_targets) == ("local", True)
    assert PDDOptions.resolve("M1").lambda_kr == 1.0
    mixed = PDDOptions.resolve(Variant.FULL, "paper", tau_low=0.4, cosine="global")
    assert (mixed.tau_low, mixed.tau_high, mixed.cosine.value) == (0.4, 0.75, "global")
    assert mixed.as_dict()["variant"] == "full"
    with pytest.raises(ConfigError, match="tau_lo"):
        PDDOptions.resolve("full", "code", tau_lo=0.4)
    with pytest.raises(ConfigError, match="variant"):
        PDDOptions.resolve("M5")
    with pytest.raises(ConfigError, match="prp_cos_sign"):
        PDDOptions.resolve("full", prp_cos_sign=0)


@pytest.mark.parametrize("variant", ["full", "M3", "M1"])
def test_trainable_weights_take_the_layout_of_the_features_and_train_exactly_as_in_contiguous_memory(
        tiny_pdd, images, variant):
    """VMamba's taps are channels_last views (the authors' layout), so every student conv and BN runs channels_last
    whatever the weights' layout: the VMamba variants keep their trainable weights channels_last too (faster), which
    changes no bit of the losses or gradients. M1 (RD4AD) reads contiguous wide-ResNet maps and keeps contiguous
    weights, and so RD4AD's numerics. A contiguous-copy regression of the taps fails the first assertion."""
    model = tiny_pdd(variant, "code")
    features = model.teacher_features(images)
    uses_vmamba = variant != "M1"
    assert all(f.is_contiguous(memory_format=torch.channels_last) == uses_vmamba for name, f in features.items()
               if name.startswith("Z") and f.shape[-1] > 1), {name: f.stride() for name, f in features.items()}
    conv_weights = [p for p in model.student_parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert all(w.is_contiguous(memory_format=torch.channels_last) is uses_vmamba for w in conv_weights)
    contiguous = tiny_pdd(variant, "code").to(memory_format=torch.contiguous_format)
    for trained in (model, contiguous):
        trained.train()
        trained.loss_from_features(features)["total"].backward()
    assert torch.equal(model.loss_from_features(features)["total"], contiguous.loss_from_features(features)["total"])
    for (name, ours), (_, theirs) in zip(model.named_parameters(), contiguous.named_parameters()):
        if ours.grad is not None:
            assert torch.equal(ours.grad, theirs.grad), name


def loss_and_gradients(model, features):
    """Train-mode losses (batch statistics: the running ones they update do not enter) and fresh gradients."""
    model.train().zero_grad(set_to_none=True)
    terms = model.loss_from_features(features)
    terms["total"].backward()
    return ({name: value.detach() for name, value in terms.items() if torch.is_tensor(value)},
            {name: p.grad for name, p in model.named_parameters() if p.grad is not None})


def stock_losses(monkeypatch):
    """pdd.models.loss on PyTorch's own cosine and MSE, as before pdd.ops.fused_loss."""
    monkeypatch.setattr(loss_module, "global_cosine_similarity",
                        lambda a, b, eps: F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=eps))
    monkeypatch.setattr(loss_module, "mse_loss", F.mse_loss)


@pytest.mark.parametrize("fidelity", FIDELITIES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_losses_train_every_variant_exactly_as_the_stock_ops(tiny_pdd, variant, fidelity, monkeypatch):
    """The fused cosine and MSE (channels-last gradients) change no bit of any loss term or gradient: M1 stays
    RD4AD's numerics and `full`/`code` the authors'. 32² is enough for the InA's upsampling to round
    differently on channels-last gradients (the next test)."""
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = tiny_pdd(variant, fidelity)
    features = model.teacher_features(images)
    fused_terms, fused_grads = loss_and_gradients(model, features)
    stock_losses(monkeypatch)
    stock_terms, stock_grads = loss_and_gradients(model, features)
    assert fused_terms.keys() == stock_terms.keys() and fused_grads.keys() == stock_grads.keys()
    assert all(torch.equal(fused_terms[k], stock_terms[k]) for k in stock_terms), fused_terms
    assert [k for k in stock_grads if not torch.equal(fused_grads[k], stock_grads[k])] == []


def test_the_targets_gradient_reaches_the_ina_upsampling_in_nchw(tiny_pdd, monkeypatch):
    """Without `nchw_gradient` the fused losses' channels-last gradients would change the InA weights' gradients
    in `full`/`code` (targets not detached) by float32 rounding."""
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = tiny_pdd("full", "code")
    features = model.teacher_features(images)
    monkeypatch.setattr(adapters, "nchw_gradient", lambda x: x)
    _, unpinned = loss_and_gradients(model, features)
    stock_losses(monkeypatch)
    _, stock = loss_and_gradients(model, features)
    changed = {k for k in stock if not torch.equal(unpinned[k], stock[k])}
    assert changed and all(k.startswith("neck.ina.") for k in changed), changed


@pytest.mark.parametrize("variant", ["full", "M1"])
def test_only_the_transposed_convolutions_weight_gradients_leave_the_stock_kernels(tiny_pdd, images, variant,
                                                                                   monkeypatch):
    """The students' 2x2 transposed convolutions compute their weight gradient as a GEMM on channels-last maps
    (pdd.ops.transposed_conv): every output, loss term and every other gradient stays the stock module's bit for
    bit. M1 reads NCHW maps and keeps oneDNN's kernel, so all of RD4AD's gradients."""
    model = tiny_pdd(variant, "code")
    features = model.teacher_features(images)
    gemm_calls = []
    weight_gradient = transposed_conv.weight_gradient
    monkeypatch.setattr(transposed_conv, "weight_gradient",
                        lambda *args: gemm_calls.append(args[1].shape) or weight_gradient(*args))
    terms, grads = loss_and_gradients(model, features)
    stock = copy.deepcopy(model)
    for module in stock.modules():
        if isinstance(module, ConvTranspose2x2):
            module.__class__ = nn.ConvTranspose2d
    stock_terms, stock_grads = loss_and_gradients(stock, features)
    transposed = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, ConvTranspose2x2)}
    assert transposed and len(gemm_calls) == (0 if variant == "M1" else 2 * len(transposed))  # two student paths
    assert all(torch.equal(terms[k], stock_terms[k]) for k in stock_terms)
    changed = {k for k in stock_grads if not torch.equal(grads[k], stock_grads[k])}
    assert changed <= transposed
    for name in transposed:
        torch.testing.assert_close(grads[name], stock_grads[name], rtol=1e-5, atol=1e-7)
