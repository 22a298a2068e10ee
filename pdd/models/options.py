"""Which PDD architecture to build and how faithfully: one options object instead of model copies.

Every place where the authors' released code departs from the paper is its own field, so a run can take the
code reading, the paper reading, or any mix (docs/model.md lists each switch with its source).

This module is the one declaration of the model's options, their types and ranges, and of the enums the rest
of pdd names (`Variant`, `Fidelity`, `Scoring`, ...): `pdd.config` generates its `params.yaml` sections from
it. It therefore imports neither torch nor any module that does, so validating params stays light.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from pdd.errors import ConfigError
from pdd.models.pretrained import WRN50_TAGS


UnitInterval = Annotated[float, Field(ge=0, le=1)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PerVMambaStage = Annotated[tuple[int, ...], Field(min_length=4, max_length=4)]  # VMamba has 4 stages


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

    @property
    def scorings(self) -> tuple[Scoring, ...]:
        """`ts` always; `ss` compares the two student paths, so only an architecture with two has it."""
        return (Scoring.TS, Scoring.SS) if len(self.student_paths) == 2 else (Scoring.TS,)

    @property
    def options_read(self) -> frozenset[str]:
        """The tunable options this architecture's model and loss read (`PDDModel`, `PDDLoss`); setting another
        changes nothing of it, so a variant may not (`pdd params check`; tests/models/test_pdd_loss.py checks
        each against the loss)."""
        if not self.uses_vmamba:  # RD4AD's loss on its one student; its targets are the frozen teacher's features
            return frozenset({"cosine", "lambda_kr"})
        read = {"detach_targets"}  # the fused targets train through the losses unless detached
        if "plain" in self.student_paths:
            read |= {"lambda_kr"}  # L_kr: an MSE, no cosine
        if "prior" in self.student_paths:
            read |= {"lambda_prp", "alpha", "beta", "cosine", "prp_cos_sign"}
        if len(self.student_paths) == 2:
            read |= {"shared_students", "layerloss", "lambda_div", "tau_low", "tau_high", "low_dim_layers"}
        return frozenset(read)


class Fidelity(str, enum.Enum):
    """`code`: what the released code computes (the default); `paper`: what the paper's equations say."""

    CODE = "code"
    PAPER = "paper"


class Scoring(str, enum.Enum):
    """How an anomaly map is scored (`PDDModel.anomaly_map`)."""

    TS = "ts"  # teacher-student: 1 - cos(student, target), summed over levels and student paths
    SS = "ss"  # student-student: 1 - cos(prior path, plain path); needs the two students of `full`


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


def values_literal(enum_cls: type[enum.Enum]) -> Any:
    """`Literal` of an enum's values: how files (params.yaml, metrics.json) hold an option, since strict
    pydantic validation does not turn a plain string into the enum."""
    return Literal[tuple(member.value for member in enum_cls)]


# the enums as params.yaml and metrics.json name them
VariantName = values_literal(Variant)
FidelityName = values_literal(Fidelity)
ScoringName = values_literal(Scoring)

TUNABLE = "tunable"  # field metadata key: params.yaml may set the option (model.fidelities, variants.*.overrides)


def _tunable(default: Any) -> Any:
    """A field that params.yaml sets per fidelity and per variant; the others come from other sections."""
    return dataclasses.field(default=default, metadata={TUNABLE: True})


@dataclass(frozen=True)
class PDDOptions:
    """Everything `build_pdd` needs; build it with `PDDOptions.resolve`, which fills in fidelity defaults.

    Each field's type hint is also its range (checked by `validate` and, for the tunable fields, by
    params.yaml's validation, whose `config.ModelOptions` is generated from these fields).
    """

    variant: Variant = Variant.FULL
    fidelity: Fidelity = Fidelity.CODE
    # --- code/paper discrepancies (docs/model.md) ---
    shared_students: bool = _tunable(True)
    prp_cos_sign: Literal[-1, 1] = _tunable(+1)  # +1: L_prp adds +cos (code); -1: it adds 1 - cos (paper eq. 7)
    tau_low: UnitInterval = _tunable(0.75)  # hinge threshold of the `low_dim_layers` shallowest levels
    tau_high: UnitInterval = _tunable(0.30)  # hinge threshold of the other levels
    low_dim_layers: Annotated[int, Field(ge=0, le=3)] = _tunable(1)  # there are 3 levels
    cosine: Cosine = _tunable(Cosine.GLOBAL)
    detach_targets: bool = _tunable(False)
    layerloss: LayerLoss = _tunable(LayerLoss.FINAL)  # the official script's `--layerloss` modes 4, 1 and 2
    # --- loss weights: total = lambda_kr*L_kr + lambda_prp*L_prp + lambda_div*L_div,
    #     L_prp = sum_l alpha*MSE + beta*cos-term; the code's 0.02*MSE + 0.05*cos is lambda_prp=0.02, alpha=1, beta=2.5
    alpha: NonNegativeFloat = _tunable(1.0)
    beta: NonNegativeFloat = _tunable(2.5)
    lambda_kr: NonNegativeFloat = _tunable(0.02)
    lambda_prp: NonNegativeFloat = _tunable(0.02)
    lambda_div: NonNegativeFloat = _tunable(0.5)
    # --- scoring ---
    # Gaussian smoothing of the anomaly map (the authors' sigma; params eval.sigma)
    map_sigma: Annotated[float, Field(gt=0)] = 4.0
    # --- teachers ---
    pretrained: bool = False
    wrn_tag: Literal[WRN50_TAGS] = "racm_in1k"
    wrn_weights: str | None = None
    vmamba_weights: str | None = None
    vmamba_depths: PerVMambaStage = (2, 2, 9, 2)
    vmamba_dims: PerVMambaStage = (96, 192, 384, 768)
    teacher_seed: int = 0  # seeds the random init of the teachers when `pretrained` is False

    @classmethod
    def resolve(
        cls, variant: str | Variant = Variant.FULL, fidelity: str | Fidelity = Fidelity.CODE, **overrides: Any
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

    @classmethod
    def tunable_fields(cls) -> dict[str, Any]:
        """Name -> type hint (with its range) of each option params.yaml may set, in declaration order."""
        hints = _field_hints()
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.metadata.get(TUNABLE)}

    def validate(self) -> None:
        """Every field against its type hint (strictly: True is no int), then the cross-field rules."""
        for name, adapter in _field_adapters().items():
            try:
                adapter.validate_python(getattr(self, name), strict=True)
            except ValidationError as exc:
                problems = "; ".join(error["msg"] for error in exc.errors())
                raise ConfigError(f"{name}: {problems} (got {getattr(self, name)!r})") from None
        if self.layerloss is not LayerLoss.FINAL and self.variant is not Variant.FULL:
            raise ConfigError(f"layerloss {self.layerloss.value} is a mode of the official two-student model: it "
                              f"needs variant 'full', got {self.variant.value!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values, for checkpoints and provenance."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, enum.Enum):
                out[key] = value.value
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out


@functools.cache
def _field_hints() -> dict[str, Any]:
    return typing.get_type_hints(PDDOptions, include_extras=True)


@functools.cache
def _field_adapters() -> dict[str, TypeAdapter[Any]]:
    return {name: TypeAdapter(hint) for name, hint in _field_hints().items()}


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
