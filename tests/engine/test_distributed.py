"""torchrun with two gloo processes on the CPU trains like one process (within batch-norm tolerance).

That the replicas stay in sync is checked by the trainer itself after every epoch (a run fails otherwise).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from pdd.engine.results import read_metrics

pytestmark = pytest.mark.slow
# 8 training images at 32x32, one epoch: one step of 8 in one process, or one step of 4 on each of 2 ranks
SMALL = ("data.image_size=32", "train.epochs=1", "train.eval_every=1")


def _total_losses(run_dir: Path) -> list[float]:
    with open(run_dir / "dvclive" / "plots" / "metrics" / "train" / "total.tsv", newline="") as handle:
        return [float(row[1]) for row in list(csv.reader(handle, delimiter="\t"))[1:]]


def test_two_gloo_processes_match_one_process(engine_workspace, tmp_path):
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    own_cache = f"paths.cache={tmp_path / 'cache'}"  # the session cache holds the baseline run's entries only
    single, _ = engine_workspace.run(*engine_workspace.train_args(single_dir, *SMALL, own_cache, "train.batch_size=8"))
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = (str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "pdd")
    ddp, _ = engine_workspace.run(*engine_workspace.train_args(ddp_dir, *SMALL, own_cache, "train.batch_size=4"),
                                  launcher=torchrun, env={"OMP_NUM_THREADS": "1"})
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    for run_dir in (single_dir, ddp_dir):
        evaluated, _ = engine_workspace.run(*engine_workspace.evaluate_args(run_dir))
        assert evaluated.returncode == 0, evaluated.stderr[-3000:]

    # rank 0 alone logged (one row per global step, the loss averaged over ranks) and checkpointed
    assert len(_total_losses(ddp_dir)) == 1
    assert _total_losses(ddp_dir)[0] == pytest.approx(_total_losses(single_dir)[0], rel=0.05)
    assert json.loads((ddp_dir / "trained.json").read_text())["global_step"] == 1
    ddp_metrics = read_metrics(ddp_dir / "metrics.json")
    device = ddp_metrics["provenance"]["device"]
    assert device.startswith("cpu (") and device.endswith(" x2"), device
    # with 8 test images a ranking metric flips on noise, so compare what they are computed from: the scores
    # (batch-norm statistics of a 4-image rank batch differ from those of the 8-image batch, hence a tolerance)
    for scoring in ("ts", "ss"):
        single_scores, ddp_scores = (_scores(d / f"scores_{scoring}.csv") for d in (single_dir, ddp_dir))
        assert ddp_scores.keys() == single_scores.keys()
        relative = [abs(ddp_scores[path] / score - 1) for path, score in single_scores.items()]
        assert max(relative) < 0.15 and sum(relative) / len(relative) < 0.06, (scoring, relative)


def _scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
