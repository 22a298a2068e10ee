"""The one `pdd` command line: a sub-command module that cannot be imported is an error that names it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from pdd import cli
from tests.processes import run_pdd


def test_a_command_module_that_fails_to_import_is_named(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "pdd.no_such_commands"))
    monkeypatch.delitem(sys.modules, "pdd.no_such_commands", raising=False)
    with pytest.raises(SystemExit, match=r"cannot load the commands of pdd\.no_such_commands .*reinstall pdd"):
        cli.build_parser()


def test_every_command_is_registered():
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"data", "train", "evaluate", "tables", "figures", "explain", "params", "weights", "export",
            "predict"} <= set(commands)


def test_each_command_loads_only_its_own_module():
    for command, module in cli.COMMANDS.items():
        parser = cli.build_parser(command)
        registered = set(parser._subparsers._group_actions[0].choices)
        assert command in registered
        assert registered == {name for name, owner in cli.COMMANDS.items() if owner == module}


def test_pdd_tables_logs_at_info(tmp_path):
    """Logging is configured once, by the `pdd` command, for every sub-command (`pdd tables` logged nothing)."""
    repo = Path(__file__).resolve().parents[1]
    results = repo / "tests" / "reporting" / "fixtures" / "results"
    result = run_pdd(["tables", "--params", str(repo / "params.yaml"), "--results", str(results), "--out",
                      str(tmp_path), "--set", "seeds=[0, 1]", "--only", "table1"], cwd=repo)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^INFO pdd\.reporting\.cli: table1: \d+ run\(s\) read from ", result.stderr, re.MULTILINE), \
        result.stderr
