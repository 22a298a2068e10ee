"""Validating params needs no torch: `pdd.config` reads the model's options from a torch-free module."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["pdd.config", "pdd.models.options", "pdd.models", "pdd.engine.cli"])
def test_module_imports_without_torch(module):
    # a fresh interpreter: this test process has imported torch long ago
    script = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
