"""`snakemake --lint` has nothing to say about the workflow (both profiles: their data rules differ)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
SNAKEMAKE = BIN / "snakemake"

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed (the `workflow` extra)")


@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_snakemake_lint_is_clean(profile):
    result = subprocess.run(
        [str(SNAKEMAKE), "--lint", "--nolock", "--config", f"profile={profile}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output, output
