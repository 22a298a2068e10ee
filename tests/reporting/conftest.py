"""A small fixed results set (tests/reporting/fixtures) and the settings the golden files were made with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def settings() -> ReportSettings:
    return ReportSettings(fidelity="code", selection="best_of_test", seeds=(0, 1), gap_tolerance=0.03,
                          table5_arms=PAPER_TAU_ARMS)


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
