"""The one `pdd` command line: a sub-command module that cannot be imported is an error that names it."""

from __future__ import annotations

import sys

import pytest

from pdd import cli


def test_a_command_module_that_fails_to_import_is_named(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "pdd.no_such_commands"))
    monkeypatch.delitem(sys.modules, "pdd.no_such_commands", raising=False)
    with pytest.raises(SystemExit, match=r"cannot load the commands of pdd\.no_such_commands .*reinstall pdd"):
        cli.build_parser()


def test_every_command_is_registered():
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"data", "train", "evaluate", "tables", "figures", "explain", "params", "weights", "export",
            "predict"} <= set(commands)
