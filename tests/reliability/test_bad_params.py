"""Bad params stop `pdd train` before any work (no run directory, no model), naming the key.

The validation rules themselves (every field, profiles, overrides) are tested in
tests/workflow/test_params.py; here they are exercised through the command line, as users hit them."""

from __future__ import annotations

import pytest
import yaml

from pdd.cli import main

pytestmark = pytest.mark.reliability

BAD_OVERRIDES = {
    "unknown key": ("train.lrr=0.1", "train.lrr", "unknown key"),
    "wrong type": ("train.epochs=ten", "train.epochs", "integer"),
    "tau above 1": ("variants.full.overrides.tau_low=1.5", "variants.full.overrides.tau_low", "less than or equal to 1"),
    "tau below 0": ("model.fidelities.code.tau_high=-0.1", "model.fidelities.code.tau_high", "greater than or equal to 0"),
    "lr zero": ("train.lr=0", "train.lr", "greater than 0"),
    "lr negative": ("train.lr=-0.001", "train.lr", "greater than 0"),
    "epochs zero": ("train.epochs=0", "train.epochs", "greater than or equal to 1"),
}


def _train_args(tmp_path, params, *sets: str) -> list[str]:
    return ["train", "--params", str(params), "--profile", "demo", *[a for s in sets for a in ("--set", s)],
            "--dataset", "headct", "--variant", "full", "--seed", "0", "--out", str(tmp_path / "run")]


@pytest.mark.parametrize("case", BAD_OVERRIDES)
def test_train_rejects_a_bad_override_naming_the_key(tmp_path, capsys, repo_root, case):
    override, key, reason = BAD_OVERRIDES[case]
    assert main(_train_args(tmp_path, repo_root / "params.yaml", f"paths.cache={tmp_path / 'cache'}", override)) == 2
    error = capsys.readouterr().err
    assert f"  {key}: " in error and reason in error and "[set by --set]" in error
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_a_bad_value_in_the_params_file_is_rejected_in_a_fresh_process(tmp_path, repo_root, procs):
    tree = yaml.safe_load((repo_root / "params.yaml").read_text())
    tree["train"]["lr"] = -2e-3
    tree["variants"]["full"]["overrides"] = {"tau_high": 1.2}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tree))
    result = procs.run_pdd(*_train_args(tmp_path, params))
    assert result.returncode == 2, result.stderr
    assert "  train.lr: " in result.stderr and "  variants.full.overrides.tau_high: " in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
