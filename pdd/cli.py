"""The one `pdd` command line that Snakemake rules, DVC stages and users all call.

Each subsystem owns its sub-commands through a `register(subparsers)` function, so this file
only wires them together, configures logging once for every command (INFO lines on stderr), and
turns expected failures into one clear message and exit code 2. A command loads only the module
that owns it (`pdd predict` imports no training code); `pdd --help` loads them all.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pdd.allocator import tune_allocator
from pdd.errors import PDDError

# the module that owns each sub-command; each exposes register(subparsers) and sets `func` on its parsers
COMMANDS = {
    "data": "pdd.data.cli",  # pdd data download|prepare|status|synthetic
    "train": "pdd.engine.cli",
    "evaluate": "pdd.engine.cli",
    "tables": "pdd.reporting.cli",
    "report": "pdd.reporting.cli",
    "results": "pdd.reporting.cli",
    "figures": "pdd.reporting.cli",
    "explain": "pdd.reporting.cli",
    "params": "pdd.config.cli",  # pdd params check|show|plan|dvc
    "weights": "pdd.models.cli",  # pdd weights fetch|import-official
    "export": "pdd.inference.cli",
    "predict": "pdd.inference.cli",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of `command` alone (its module's commands), or of every command when None or unknown."""
    parser = argparse.ArgumentParser(prog="pdd", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a broken install must not make commands silently disappear
            raise SystemExit(f"pdd: cannot load the commands of {module_name} ({type(exc).__name__}: {exc}); "
                             "reinstall pdd (`make venv`, or `pip install -e .`)") from exc
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    tune_allocator()  # before any thread starts: training steps reuse freed memory instead of faulting it in
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        return int(args.func(args) or 0)
    except PDDError as exc:
        print(f"pdd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
