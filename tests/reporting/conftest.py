"""A small fixed results set (tests/reporting/fixtures) and the settings the golden files were made with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pdd.reporting.arms import rerun_arms
from pdd.reporting.tables import ReportSettings, Table5Arm

from .example_maps import write_example_maps

HERE = Path(__file__).parent
FIXTURE_RESULTS = HERE / "fixtures" / "results"
GOLDEN = HERE / "golden"
# the paper's Table 5 arms, named as params.yaml names them
PAPER_TAU_ARMS = tuple(
    Table5Arm(dataset, f"tau-{low:.2f}-{high:.2f}", low, high)
    for dataset, low, high in [
        ("zhanglab", 0.65, 0.40), ("zhanglab", 0.75, 0.30), ("zhanglab", 0.40, 0.75),
        ("headct", 0.65, 0.30), ("headct", 0.75, 0.30), ("headct", 0.40, 0.75), ("brainmri", 0.40, 0.75),
    ]
)


@pytest.fixture(scope="session")
def fixture_results(tmp_path_factory) -> Path:
    """The fixed results set plus the anomaly maps generated for it (read-only by convention)."""
    root = Path(shutil.copytree(FIXTURE_RESULTS, tmp_path_factory.mktemp("fixture") / "results"))
    write_example_maps(root)
    return root


# the fixture has RD4AD's re-run on every dataset of Tables 1 and 2, as the shipped plan
PAPER_RERUNS = tuple(dict.fromkeys((table, arm.dataset, arm.variant) for table in ("table1", "table2")
                                   for arm in rerun_arms(table)))


@pytest.fixture(scope="session")
def settings() -> ReportSettings:
    return ReportSettings(fidelity="code", selection="best_of_test", seeds=(0, 1), gap_tolerance=0.03,
                          table5_arms=PAPER_TAU_ARMS, reruns=PAPER_RERUNS)


@pytest.fixture
def results_copy(fixture_results, tmp_path) -> Path:
    """A writable copy of the fixture results, for tests that break a file."""
    return Path(shutil.copytree(fixture_results, tmp_path / "results"))


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/reporting/golden/<name>; PDD_UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / name
    if os.environ.get("PDD_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; create it with PDD_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file; review the change"


# ---- a simulated results tree with per-image scores, for the replication report ----------------------------
# The paper's plan at two seeds, three snapshots per run, small test sets; known population AUROCs make some
# verdicts and claims certain: ZhangLab's M3 far above M1 (claim supported), M4 far below M3 (contradicted),
# HeadCT's full model far below the paper's 97.5 (lower) and below RD4AD's re-run (PDD > RD4AD contradicted, a
# margin smaller than the paper's), ZhangLab's far above it (supported, larger); epoch 2 is every run's best.
SIMULATED_TEST_SETS = {
    "headct": {"headct": (20, 40)}, "brainmri": {"brainmri": (20, 45)}, "zhanglab": {"zhanglab": (40, 60)},
    "chexpert": {"chexpert": (20, 20)}, "unimedical": {"brain": (12, 16), "liver": (12, 10), "retinal": (14, 12)},
}
SIMULATED_EPOCHS = (1, 2, 3)
SIMULATED_SEEDS = (0, 1)
SIMULATED_AUROC = {("zhanglab", "M1"): 0.62, ("zhanglab", "M3"): 0.97, ("zhanglab", "M4"): 0.65,
                   ("headct", "full"): 0.60, ("headct", "rd4ad"): 0.95, ("zhanglab", "rd4ad"): 0.62}


def simulated_auroc(spec, scoring, epoch):
    base = SIMULATED_AUROC.get((spec.dataset, spec.variant), 0.85) - (0.1 if scoring == "ss" else 0.0)
    return base + (0.02 if epoch == 2 else 0.0)


@pytest.fixture(scope="session")
def simulated_params_args(repo_root) -> list[str]:
    """`--set` arguments that point params.yaml at the simulated tree's seeds with few resamples."""
    return [f"seeds=[{', '.join(map(str, SIMULATED_SEEDS))}]", "reporting.uncertainty.resamples=300"]


@pytest.fixture(scope="session")
def simulated_results(tmp_path_factory, repo_root, simulated_params_args) -> Path:
    from pdd.config import load_params
    from pdd.reporting.simulation import SimulatedTestSet, write_results

    params = load_params(repo_root / "params.yaml", overrides=simulated_params_args)
    root = tmp_path_factory.mktemp("simulated") / "results"
    runs = [(run, params.variant(run.variant).arch) for run in params.plan_runs()]
    write_results(root, runs, {name: SimulatedTestSet(classes) for name, classes in SIMULATED_TEST_SETS.items()},
                  SIMULATED_EPOCHS, simulated_auroc)
    return root
