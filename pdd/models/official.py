"""Weights in the naming of the authors' released code (`OxygenLu/PDD@573feed`), both ways.

The official training script `torch.save`s `{'decoder': decoder.module.state_dict(), 'optimizer': ...,
'scheduler': ..., 'epoch': E-1}` as `epoch_{E}_auc={AUROC}.pth`; its teachers are the ImageNet files and are
never saved. Its three state dicts map one-to-one onto `PDDModel("full", "code")` by a purely regular renaming
(every shape equal; reference: `pdd_official_state_dict.json`):

* `decoder` (`pdd_decoder`): students `layer{1,2,3}.*`, InA/MMU adapters `up_dim_v_r{1..4}.*` and MPA `mlp.*`,
  renamed by the fixed sub-name substitutions below;
* `wrn50` (`resnet_encoder.wide_resnet50_2`): the same names under `teachers.wrn50.body.`; its `fc.*` is
  never used by PDD and has no counterpart;
* `vmamba` (`vanilla_vmamba_tiny`): the names of PDD's copy of VMamba, which `pdd.models.vmamba` renames to
  the v0 checkpoint's names; its `classifier.*` has no counterpart.

`convert_official_state_dict` renames official -> pdd, `to_official_state_dict` pdd -> official (its exact
inverse on every tensor pdd has), and `load_official` loads the parts strictly into a model, naming every
missing, unexpected or misshapen key.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from pdd.errors import WeightsError
from pdd.models.vmamba import CHECKPOINT_TO_PDD_NAMES, PDD_TO_CHECKPOINT_NAMES

OFFICIAL_SOURCE = "OxygenLu/PDD@573feed091ef67e4482e45dda6c8365c63505937"
PARTS = ("decoder", "wrn50", "vmamba")
# tensors of the official modules that PDD never uses (the teachers' ImageNet classifiers)
UNUSED_OFFICIAL_KEYS = {
    "wrn50": ("fc.weight", "fc.bias"),
    "vmamba": ("classifier.norm.weight", "classifier.norm.bias", "classifier.head.weight", "classifier.head.bias"),
    "decoder": (),
}
_PREFIX = {"wrn50": "teachers.wrn50.body.", "vmamba": "teachers.vmamba.body."}

# decoder: (official sub-name, pdd sub-name) inside one module
_DEBOTTLENECK = (("conv1", "body.0"), ("bn1", "body.1"), ("conv2", "body.3"), ("bn2", "body.4"),
                 ("conv3", "body.6"), ("bn3", "body.7"), ("upsample.0", "shortcut.0"), ("upsample.1", "shortcut.1"))
_ADAPTER = (("conv1", "main.0"), ("bn1", "main.1"), ("conv2", "main.3"), ("bn2", "main.4"), ("conv3", "main.6"),
            ("bn3", "main.7"), ("residual_proj", "shortcut"))
_ADAPTERS = {"up_dim_v_r1": "neck.ina.0", "up_dim_v_r2": "neck.ina.1", "up_dim_v_r3": "neck.ina.2",
             "up_dim_v_r4": "neck.mmu"}
_MPA = {"mlp.shared_transform.0": "mpa.shared.0", "mlp.shared_transform.1": "mpa.shared.1",
        "mlp.branch1": "mpa.heads.0", "mlp.branch2": "mpa.heads.1"}
_TENSOR = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_DEBOTTLENECK_TO_OFFICIAL = {pdd: official for official, pdd in _DEBOTTLENECK}
_ADAPTER_TO_OFFICIAL = {pdd: official for official, pdd in _ADAPTER}
_ADAPTERS_TO_OFFICIAL = {pdd: official for official, pdd in _ADAPTERS.items()}
_MPA_TO_OFFICIAL = {pdd: official for official, pdd in _MPA.items()}

StateDict = dict[str, torch.Tensor]
Source = Union[str, os.PathLike, Mapping[str, Any]]


def _decoder_to_pdd(key: str) -> str | None:
    if match := re.fullmatch(rf"layer([123])\.(\d+)\.([a-z_]+[0-9]?(?:\.\d)?)\.{_TENSOR}", key):
        stage, block, module, tensor = match.groups()
        sub = dict(_DEBOTTLENECK).get(module)
        return None if sub is None else f"students.0.stages.{int(stage) - 1}.{block}.{sub}.{tensor}"
    if match := re.fullmatch(rf"(up_dim_v_r[1-4])\.([a-z_]+[0-9]?)\.{_TENSOR}", key):
        adapter, module, tensor = match.groups()
        sub = dict(_ADAPTER).get(module)
        return None if sub is None else f"{_ADAPTERS[adapter]}.{sub}.{tensor}"
    if match := re.fullmatch(rf"(mlp\.(?:shared_transform\.[01]|branch[12]))\.{_TENSOR}", key):
        return f"{_MPA[match.group(1)]}.{match.group(2)}"
    return None


def _decoder_to_official(key: str) -> str | None:
    if match := re.fullmatch(rf"students\.0\.stages\.([012])\.(\d+)\.(body\.\d|shortcut\.\d)\.{_TENSOR}", key):
        stage, block, sub, tensor = match.groups()
        module = _DEBOTTLENECK_TO_OFFICIAL.get(sub)
        return None if module is None else f"layer{int(stage) + 1}.{block}.{module}.{tensor}"
    if match := re.fullmatch(rf"(neck\.ina\.[012]|neck\.mmu)\.(main\.\d|shortcut)\.{_TENSOR}", key):
        adapter, sub, tensor = match.groups()
        module = _ADAPTER_TO_OFFICIAL.get(sub)
        return None if module is None else f"{_ADAPTERS_TO_OFFICIAL[adapter]}.{module}.{tensor}"
    if match := re.fullmatch(rf"(mpa\.(?:shared\.[01]|heads\.[01]))\.{_TENSOR}", key):
        return f"{_MPA_TO_OFFICIAL[match.group(1)]}.{match.group(2)}"
    return None


def _vmamba_to_pdd(key: str) -> str:
    for pattern, replacement in PDD_TO_CHECKPOINT_NAMES:
        key = re.sub(pattern, replacement, key)
    return _PREFIX["vmamba"] + key


def _vmamba_to_official(key: str) -> str | None:
    if not key.startswith(_PREFIX["vmamba"]):
        return None
    key = key.removeprefix(_PREFIX["vmamba"])
    for pattern, replacement in CHECKPOINT_TO_PDD_NAMES:
        key = re.sub(pattern, replacement, key)
    return key


def _rename_to_pdd(state_dict: Mapping[str, torch.Tensor], part: str) -> tuple[StateDict, list[str]]:
    """(renamed tensors, official keys that have no pdd name); the unused classifier tensors are dropped."""
    renamed, unmapped = {}, []
    for key, value in state_dict.items():
        if key in UNUSED_OFFICIAL_KEYS[part]:
            continue
        if part == "decoder":
            new = _decoder_to_pdd(key)
        elif part == "wrn50":
            new = _PREFIX["wrn50"] + key
        else:
            new = _vmamba_to_pdd(key)
        if new is None:
            unmapped.append(key)
        else:
            renamed[new] = value
    return renamed, unmapped


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise WeightsError(f"unknown official part {part!r}; use one of: {', '.join(PARTS)}")


def convert_official_state_dict(state_dict: Mapping[str, Any], part: str) -> StateDict:
    """An official state dict (or training checkpoint, DDP `module.` prefixes allowed) in pdd's names.

    The keys are those of `PDDModel.state_dict()` (e.g. `neck.ina.0.main.0.weight`); the teachers' unused
    classifier tensors are dropped. A key that is not one of the official names raises WeightsError.
    """
    _check_part(part)
    renamed, unmapped = _rename_to_pdd(official_tensors(state_dict, part), part)
    if unmapped:
        raise WeightsError(f"{len(unmapped)} key(s) are not official {part} names ({OFFICIAL_SOURCE}): "
                           f"{', '.join(unmapped)}")
    return renamed


def to_official_state_dict(source: nn.Module | Mapping[str, torch.Tensor], part: str) -> StateDict:
    """The tensors of a pdd model (or its state dict) that `part` of the official code holds, in its names.

    The exact inverse of `convert_official_state_dict`: converting the result back gives the same tensors
    under the same pdd keys. The official teachers' classifiers (`fc.*`, `classifier.*`) are not produced:
    pdd has no such tensors. Keys of other modules (e.g. a second student, the OCBE) are not official and
    raise WeightsError, as does a model without one of the official decoder's modules.
    """
    _check_part(part)
    state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    out, foreign = {}, []
    for key, value in state.items():
        if part == "decoder":
            if key.startswith("teachers."):
                continue
            official = _decoder_to_official(key)
        elif part == "wrn50":
            official = key.removeprefix(_PREFIX["wrn50"]) if key.startswith(_PREFIX["wrn50"]) else None
            if official is None:
                continue
        else:
            if not key.startswith(_PREFIX["vmamba"]):
                continue
            official = _vmamba_to_official(key)
        if official is None:
            foreign.append(key)
        else:
            out[official] = value
    if foreign:
        raise WeightsError(f"this model has {len(foreign)} tensor(s) the official {part} does not have (the "
                           f"official code builds only `full` with shared students): {', '.join(foreign[:8])}"
                           f"{' ...' if len(foreign) > 8 else ''}")
    if not out:
        raise WeightsError(f"this model has no official {part} tensors (a {part} teacher/decoder is not part of it)")
    return out


def official_tensors(source: Mapping[str, Any], part: str) -> StateDict:
    """The `part` state dict inside whatever the official code saved: a bare state dict, a training
    checkpoint (`{'decoder': ..., 'optimizer': ...}`), a `{'model': ...}` / `{'state_dict': ...}` wrapper,
    with or without DDP's `module.` prefix."""
    for wrapper in (part, "model", "state_dict"):
        if isinstance(source.get(wrapper), Mapping):
            source = source[wrapper]
            break
    tensors = {key: value for key, value in source.items() if isinstance(value, torch.Tensor)}
    if not tensors or len(tensors) != len(source):
        others = sorted(str(key) for key, value in source.items() if not isinstance(value, torch.Tensor))
        raise WeightsError(f"not an official {part} state dict: no tensors, or entries that are not tensors "
                           f"({', '.join(others[:5])}); pass the file rank 0 of the official script saved, or its "
                           f"'{part}' entry")
    if all(key.startswith("module.") for key in tensors):
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    return tensors


def read_official_file(path: str | os.PathLike) -> dict[str, Any]:
    """A `.pth` the official code saved, loaded without executing pickled code (`weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"official checkpoint {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise WeightsError(
            f"{path} cannot be read as plain tensors ({type(exc).__name__}: {exc}). If it comes from a source you "
            "trust, re-save its decoder state dict: torch.save(torch.load(path, weights_only=False)['decoder'], "
            "new_path)") from exc
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{path} holds a {type(loaded).__name__}, not a state dict or training checkpoint")
    return dict(loaded)


def _as_mapping(source: Source) -> Mapping[str, Any]:
    return source if isinstance(source, Mapping) else read_official_file(source)


def load_official(
    model: nn.Module, decoder: Source | None = None, wrn50: Source | None = None, vmamba: Source | None = None
) -> None:
    """Load official state dicts, files or training checkpoints into `model`, strictly per part.

    Every given part must cover exactly the model's tensors of that part (the decoder part: neck, MPA and
    students; a teacher part: that teacher), with equal shapes. Otherwise nothing is loaded and one
    WeightsError names every missing, unexpected and misshapen key (in official names where they have one).
    """
    given = {"decoder": decoder, "wrn50": wrn50, "vmamba": vmamba}
    if all(value is None for value in given.values()):
        raise WeightsError("load_official needs at least one of decoder=, wrn50=, vmamba=")
    own = model.state_dict()
    updates: StateDict = {}
    problems: list[str] = []
    for part, source in given.items():
        if source is None:
            continue
        renamed, unmapped = _rename_to_pdd(official_tensors(_as_mapping(source), part), part)
        expected = {key for key in own if _belongs_to(key, part)}
        missing = sorted(expected - set(renamed))
        unexpected = [*unmapped, *sorted(set(renamed) - expected)]
        misshapen = [f"{key} {tuple(renamed[key].shape)} vs {tuple(own[key].shape)}"
                     for key in sorted(expected & set(renamed)) if renamed[key].shape != own[key].shape]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)):
            if keys:
                problems.append(f"{part}: {len(keys)} {label}: {', '.join(keys)}")
        updates.update(renamed)
    if problems:
        raise WeightsError("the official weights do not fit this model (is it `full` with shared students, and are "
                           "the VMamba dims those of the checkpoint?):\n  " + "\n  ".join(problems))
    model.load_state_dict({**own, **updates}, strict=True)


def _belongs_to(key: str, part: str) -> bool:
    if part == "decoder":
        return not key.startswith("teachers.")
    return key.startswith(_PREFIX[part])
