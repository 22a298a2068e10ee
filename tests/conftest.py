"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """`../shared/reference`, or skip: the project must pass its tests without it."""
    path = SHARED_DIR / "reference"
    if not path.is_dir():
        pytest.skip("../shared/reference is absent")
    return path


@pytest.fixture(scope="session")
def shared_headct() -> Path:
    """The real HeadCT raw download in `../shared/datasets/headct`, or skip."""
    path = SHARED_DIR / "datasets" / "headct"
    if not (path / "labels.csv").is_file():
        pytest.skip("../shared/datasets/headct is absent")
    return path
