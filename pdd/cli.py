"""The one `pdd` command line that Snakemake rules, DVC stages and users all call.

Each subsystem owns its sub-commands through a `register(subparsers)` function, so this file
only wires them together and turns expected failures into one clear message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pdd.engine.allocator import tune_allocator
from pdd.errors import PDDError

# sub-command modules; each exposes register(subparsers) and sets `func` on its parsers
COMMAND_MODULES = (
    "pdd.data.cli",  # pdd data download|prepare|status|synthetic
    "pdd.engine.cli",  # pdd train, pdd evaluate
    "pdd.reporting.cli",  # pdd tables, pdd figures, pdd explain
    "pdd.config.cli",  # pdd params check|show|plan|dvc
    "pdd.models.cli",  # pdd weights fetch|import-official
    "pdd.inference.cli",  # pdd export, pdd predict
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdd", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a broken install must not make commands silently disappear
            raise SystemExit(f"pdd: cannot load the commands of {module_name} ({type(exc).__name__}: {exc}); "
                             "reinstall pdd (`make venv`, or `pip install -e .`)") from exc
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    tune_allocator()  # before any thread starts: training steps reuse freed memory instead of faulting it in
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PDDError as exc:
        print(f"pdd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
