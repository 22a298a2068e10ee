"""Which PDD architecture to build and how faithfully: one options object instead of model copies.

Every place where the authors' released code departs from the paper is its own field, so a run can take the
code reading, the paper reading, or any mix (docs/model.md lists each switch with its source).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from pdd.errors import ConfigError
from pdd.models.weights import WRN50_TAGS


class Variant(str, enum.Enum):
    """The architectures of the paper's Table 3."""

    M1 = "M1"  # RD4AD: WRN50 teacher (layers 1-3), OCBE bottleneck, one de-ResNet student
    M2 = "M2"  # M1 + MPA priors (computed from the bottleneck code) injected into the student
    M3 = "M3"  # two teachers fused by InA/MMU, one plain student
    M4 = "M4"  # M3 with the MPA priors injected into its student
    FULL = "full"  # two teachers, two students (with and without priors), diversity loss

    @property
    def uses_vmamba(self) -> bool:
        return self not in (Variant.M1, Variant.M2)

    @property
    def uses_priors(self) -> bool:
        return self is not Variant.M1 and self is not Variant.M3

    @property
    def student_paths(self) -> tuple[str, ...]:
        """`prior` is the student fed the MPA priors (the code's "vssm" path), `plain` the one without."""
        if self is Variant.FULL:
            return ("prior", "plain")
        return ("prior",) if self.uses_priors else ("plain",)


class Fidelity(str, enum.Enum):
    """`code`: what the released code computes (the default); `paper`: what the paper's equations say."""

    CODE = "code"
    PAPER = "paper"


class Cosine(str, enum.Enum):
    """How a loss compares two feature maps by angle."""

    GLOBAL = "global"  # one cosine per sample over the flattened C*H*W vector (released code)
    LOCAL = "local"  # channel cosine at every position, averaged over positions (paper, RD4AD paper eq. 3)


class LayerLoss(int, enum.Enum):
    """The objective, named after the official script's `--layerloss` switch (`train_two_twins_ddp.py`).

    Every mode trains the same two-path model: both student paths run, update their BN statistics and enter
    the anomaly map; only what is minimised differs.
    """

    FINAL = 4  # the released default: lambda_kr*L_kr + lambda_prp*L_prp + lambda_div*(hinged L_div)
    PRIOR_MSE = 1  # "abluation 1": lambda_prp * alpha * sum_l MSE(SA_l, T_l) alone, the plain path untrained
    UNTHRESHOLDED_DIVERSITY = 2  # as FINAL, but L_div = sum_l cos(SA_l, SB_l), no thresholds


@dataclass(frozen=True)
class PDDOptions:
    """Everything `build_pdd` needs; build it with `PDDOptions.resolve`, which fills in fidelity defaults."""

    variant: Variant = Variant.FULL
    fidelity: Fidelity = Fidelity.CODE
    # --- code/paper discrepancies (docs/model.md) ---
    shared_students: bool = True
    prp_cos_sign: int = +1  # +1: L_prp adds +cos (code); -1: it adds 1 - cos (paper eq. 7)
    tau_low: float = 0.75  # hinge threshold of the `low_dim_layers` shallowest levels
    tau_high: float = 0.30  # hinge threshold of the other levels
    low_dim_layers: int = 1
    cosine: Cosine = Cosine.GLOBAL
    detach_targets: bool = False
    layerloss: LayerLoss = LayerLoss.FINAL  # the official script's `--layerloss` modes 4, 1 and 2
    # --- loss weights: total = lambda_kr*L_kr + lambda_prp*L_prp + lambda_div*L_div,
    #     L_prp = sum_l alpha*MSE + beta*cos-term; the code's 0.02*MSE + 0.05*cos is lambda_prp=0.02, alpha=1, beta=2.5
    alpha: float = 1.0
    beta: float = 2.5
    lambda_kr: float = 0.02
    lambda_prp: float = 0.02
    lambda_div: float = 0.5
    # --- scoring ---
    map_sigma: float = 4.0  # Gaussian smoothing of the anomaly map (the authors' sigma; params eval.sigma)
    # --- teachers ---
    pretrained: bool = False
    wrn_tag: str = "racm_in1k"
    wrn_weights: str | None = None
    vmamba_weights: str | None = None
    vmamba_depths: tuple[int, ...] = (2, 2, 9, 2)
    vmamba_dims: tuple[int, ...] = (96, 192, 384, 768)
    teacher_seed: int = 0  # seeds the random init of the teachers when `pretrained` is False

    @classmethod
    def resolve(
        cls, variant: str | Variant = "full", fidelity: str | Fidelity = "code", **overrides: Any
    ) -> PDDOptions:
        """Defaults of `fidelity` for `variant`, then `overrides`; unknown names or values raise ConfigError."""
        variant = _enum_value(Variant, variant, "variant")
        fidelity = _enum_value(Fidelity, fidelity, "fidelity")
        known = {f.name for f in dataclasses.fields(cls)} - {"variant", "fidelity"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown model option(s) {unknown}; valid options are: {', '.join(sorted(known))}")
        values = dict(_fidelity_defaults(variant, fidelity))
        values.update(overrides)
        if "cosine" in values:
            values["cosine"] = _enum_value(Cosine, values["cosine"], "cosine")
        if "layerloss" in values:
            values["layerloss"] = _enum_value(LayerLoss, values["layerloss"], "layerloss")
        for key in ("vmamba_depths", "vmamba_dims"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        options = cls(variant=variant, fidelity=fidelity, **values)
        options.validate()
        return options

    def validate(self) -> None:
        if self.prp_cos_sign not in (1, -1):
            raise ConfigError(f"prp_cos_sign must be +1 (code: +cos) or -1 (paper: 1-cos), got {self.prp_cos_sign!r}")
        if self.wrn_tag not in WRN50_TAGS:
            raise ConfigError(f"wrn_tag must be one of {WRN50_TAGS}, got {self.wrn_tag!r}")
        if not 0 <= self.low_dim_layers <= 3:
            raise ConfigError(f"low_dim_layers must be in 0..3 (there are 3 levels), got {self.low_dim_layers}")
        if len(self.vmamba_depths) != 4 or len(self.vmamba_dims) != 4:
            raise ConfigError("vmamba_depths and vmamba_dims need 4 entries each, one per VMamba stage")
        if self.layerloss is not LayerLoss.FINAL and self.variant is not Variant.FULL:
            raise ConfigError(f"layerloss {self.layerloss.value} is a mode of the official two-student model: it "
                              f"needs variant 'full', got {self.variant.value!r}")
        if self.map_sigma <= 0:
            raise ConfigError(f"map_sigma must be > 0, got {self.map_sigma}")
        for name in ("alpha", "beta", "lambda_kr", "lambda_prp", "lambda_div"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")

    @property
    def two_students(self) -> bool:
        return len(self.variant.student_paths) == 2

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values, for checkpoints and provenance."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, enum.Enum):
                out[key] = value.value
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out


def _fidelity_defaults(variant: Variant, fidelity: Fidelity) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    if fidelity is Fidelity.PAPER:
        defaults.update(
            shared_students=False,
            prp_cos_sign=-1,
            tau_low=0.30,
            tau_high=0.75,
            cosine=Cosine.LOCAL,
            detach_targets=True,
        )
    if not variant.uses_vmamba:
        # RD4AD's loss has no weight; its cosine is the only term.
        defaults.update(lambda_kr=1.0)
    return defaults


def _enum_value(enum_cls: type[enum.Enum], value: Any, key: str) -> Any:
    try:
        return enum_cls(value.value if isinstance(value, enum.Enum) else value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum_cls)
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}") from None
