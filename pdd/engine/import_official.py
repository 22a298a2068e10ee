"""`pdd weights import-official`: a run directory from checkpoints the authors' training script wrote.

`scripts/train_two_twins_ddp.py` saves `epoch_{E}_auc={AUROC:.4f}.pth` = {'decoder': ..., 'optimizer': ...,
'scheduler': ..., 'epoch': E-1} every `--print_epoch` epochs, and never its teachers (the ImageNet files). Each
imported file becomes the weights snapshot of its epoch, under the run's train fingerprint, so `pdd evaluate`
scores and selects among them exactly as among its own snapshots (`eval.selection_scorer: official_first_image`
reproduces the authors' choice). The teachers are those params name, which must be the ImageNet weights the
authors' code loads. `run.json` and metrics.json record where the weights came from (`imported`, each file's
sha256 and epoch) and that the official code trained them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pdd.config import Params, RunSpec, load_params
from pdd.engine import runs
from pdd.engine.rundir import RunDir
from pdd.errors import PDDError, WeightsError
from pdd.io import atomic_write_json, sha256_file
from pdd.models.official import OFFICIAL_SOURCE, load_official, read_official_file
from pdd.models.options import Fidelity
from pdd.models.state import save_snapshot, trainable_state

log = logging.getLogger(__name__)

TRAINED_BY = f"the official code ({OFFICIAL_SOURCE}, scripts/train_two_twins_ddp.py)"
_FILE_NAME = re.compile(r"epoch_(\d+)(?:_auc=([0-9.]+?))?\.pth$")


def official_epoch(path: Path, checkpoint: dict[str, Any], epoch: int | None) -> int:
    """The number of finished epochs of an official checkpoint: `--epoch`, else its `epoch` entry + 1 (the
    script saves the 0-based index), else the `epoch_{E}` of its file name."""
    named = _FILE_NAME.search(path.name)
    saved = checkpoint.get("epoch")
    candidates = {
        "--epoch": epoch,
        "its 'epoch' entry + 1": saved + 1 if isinstance(saved, int) else None,
        "its file name": int(named.group(1)) if named else None,
    }
    found = {source: value for source, value in candidates.items() if value is not None}
    if not found:
        raise WeightsError(f"{path}: cannot tell which epoch it holds (no 'epoch' entry, no epoch_E in its name); "
                           "pass --epoch E")
    if len(set(found.values())) > 1:
        raise WeightsError(f"{path}: the epochs disagree ({', '.join(f'{s}: {v}' for s, v in found.items())}); "
                           "pass --epoch E for the right one")
    value = next(iter(found.values()))
    if value < 1:
        raise WeightsError(f"{path}: epoch {value} is not a number of finished epochs (>= 1)")
    return value


def import_official(
    files: list[str | Path],
    dataset: str,
    out: str | Path,
    *,
    params_file: str | Path = "params.yaml",
    profile: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    variant: str = "full",
    seed: int = 0,
    epoch: int | None = None,
) -> RunDir:
    """Write `out` as a completed pdd run of (`dataset`, `variant`, code, `seed`) holding `files`' decoders."""
    if epoch is not None and len(files) != 1:
        raise PDDError("--epoch names the epoch of a single file; import several files by their own epochs")
    checkpoints = {}
    for name in files:
        path = Path(name)
        checkpoint = read_official_file(path)
        found = official_epoch(path, checkpoint, epoch)
        if found in checkpoints:
            raise WeightsError(f"{path} and {checkpoints[found][0]} both hold epoch {found}")
        checkpoints[found] = (path, checkpoint)
    final = max(checkpoints)
    # the run as trained: its recipe's epochs (the variant's own where it sets them) is the last imported epoch,
    # which `pdd evaluate` reports as `last`
    given = load_params(params_file, overrides=overrides, profile=profile)
    own = variant in given.variants and "epochs" in given.variant(variant).recipe_overrides()
    overrides = [*overrides, f"{'variants.' + variant + '.' if own else ''}train.epochs={final}"]
    params: Params = load_params(params_file, overrides=overrides, profile=profile)
    spec = RunSpec(dataset, variant, Fidelity.CODE.value, seed)
    params.run_dir(*spec)  # validates the dataset and variant names
    directory = RunDir(Path(out))
    with runs.run_lock(directory):
        runs.refuse_old_layout(directory)
        if directory.record.is_file() or directory.snapshot_epochs():
            raise PDDError(f"{directory.root} already holds a run; import into a new --out directory")
        context = runs.RunContext(params, spec, directory)
        model = context.build_model()
        identity = context.identity(model)
        imported = []
        for found in sorted(checkpoints):
            path, checkpoint = checkpoints[found]
            load_official(model, decoder=checkpoint)
            named = _FILE_NAME.search(path.name)
            save_snapshot(directory.snapshot(found), trainable_state(model), {
                "run": spec.id, "arch": context.arch, "epoch": str(found),
                "train_fingerprint": identity.train_fingerprint, "source": f"{path.name} (official layout)"})
            imported.append({"file": str(path.resolve()), "sha256": sha256_file(path), "epoch": found,
                             "official_auroc_in_name": float(named.group(2)) if named and named.group(2) else None})
            log.info("epoch %d: %s -> %s", found, path, directory.snapshot(found))
        provenance = {"trained_by": TRAINED_BY, "files": imported}
        record = context.new_record(params_file, list(overrides), identity, device="unknown (trained by the "
                                    "official code)", teacher_cache=None)
        record.imported = provenance
        record.write(directory)
        atomic_write_json(directory.trained_marker, {
            "identity": asdict(identity), "run_dir": str(directory.root), "epochs": final, "global_step": None,
            "wall_time_s": 0.0, "snapshots": sorted(checkpoints), "imported": provenance})
    return directory
