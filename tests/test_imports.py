"""Validating params needs no torch: `pdd.config` reads the model's options from a torch-free module, and the
`pdd` command registers every sub-command without importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", ["pdd.config", "pdd.models.options", "pdd.models", "pdd.engine.cli", "pdd.cli",
                                    "pdd.reporting.cli"])
def test_module_imports_without_torch(module):
    # a fresh interpreter: this test process has imported torch long ago
    script = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_pdd_params_check_runs_without_torch():
    script = ("import sys; from pdd.cli import main; rc = main(['params', 'check']); "
              "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert "params.yaml: OK" in result.stdout
