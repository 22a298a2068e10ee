"""`pdd tables`, `pdd report`, `pdd results`, `pdd figures` and `pdd explain`: paper outputs from results (and,
for Fig. 1, the teachers)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pdd.config import add_params_arguments, params_from_args
from pdd.errors import ConfigError
from pdd.io import atomic_write_text
from pdd.reporting.figures import FIGURES, render_figures
from pdd.reporting.results import ResultsIndex
from pdd.reporting.tables import TABLES, ReportSettings, build_table, render_table

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    tables = subparsers.add_parser(
        "tables", help="render the tables of params.plan (Tables 1-5 and results tables of your own) from metrics.json")
    _add_io_arguments(tables)
    # any table params.plan defines, so not argparse choices: run_tables checks it against the plan
    tables.add_argument("--only", action="append", metavar="TABLE", help="render only this plan table (repeatable)")
    tables.set_defaults(func=run_tables)

    report = subparsers.add_parser(
        "report", help="the replication report: every published number with its interval and verdict, the paper's "
        "claims tested, the paper's audit against itself, the selection optimism and a forest plot")
    _add_io_arguments(report)
    report.add_argument("--workers", type=int, default=_available_cpus(),
                        help="processes resampling the test sets in parallel (default: the CPUs this process may "
                        "use)")
    report.set_defaults(func=run_report)

    results = subparsers.add_parser(
        "results", help="print the results table: one row per run x scoring x selection x scope x metric, with the "
        "file of its per-image scores")
    add_params_arguments(results)
    results.add_argument("--results", type=Path, help="results root (default: params paths.results)")
    results.add_argument("--format", choices=("csv", "markdown"), default="csv", help="output format (default: csv)")
    results.set_defaults(func=run_results)

    figures = subparsers.add_parser("figures", help="draw Figs. 3c, 4 and 5 from run outputs")
    _add_io_arguments(figures)
    figures.add_argument("--only", action="append", choices=FIGURES, help="draw only this figure (repeatable)")
    figures.set_defaults(func=run_figures)

    explain = subparsers.add_parser("explain", help="Fig. 1: Grad-CAM of the frozen teachers on test images")
    add_params_arguments(explain)
    explain.add_argument("--out", type=Path, help="output directory (default: params paths.tables)")
    explain.add_argument("--datasets", nargs="+", default=["headct", "brainmri"], help="prepared datasets to show")
    explain.add_argument("--per-label", type=int, default=2, help="normal and anomalous images per dataset")
    explain.set_defaults(func=run_explain)


def _available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one, e.g. under SLURM or taskset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _add_io_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_arguments(parser)
    parser.add_argument("--results", type=Path, help="results root (default: params paths.results)")
    parser.add_argument("--out", type=Path, help="output directory (default: params paths.tables)")


def run_tables(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    unknown = [name for name in args.only or () if name not in params.plan]
    if unknown:
        raise ConfigError(f"unknown table {unknown[0]!r}; params.plan defines: {', '.join(params.plan) or 'none'}")
    results, out = _paths(args, params)
    settings = ReportSettings.from_params(params)
    index = ResultsIndex.scan(results)
    built = [build_table(name, index, settings) for name in (args.only or params.plan)]
    for table in built:
        log.info("%s: %d run(s) read from %s%s", table.name, len(table.runs), results,
                 " (demo: synthetic data or random-init teachers)" if table.demo else "")
        _write(out / f"{table.name}.tex", render_table(table, results, settings))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pdd.reporting.report import build_report, render_report
    from pdd.reporting.uncertainty import UncertaintySettings

    params = params_from_args(args)
    results, out = _paths(args, params)
    settings = ReportSettings.from_params(params)
    index = ResultsIndex.scan(results)
    built = [build_table(name, index, settings) for name in params.plan if name in TABLES]
    report = build_report(index, settings, UncertaintySettings.from_params(params), built, workers=args.workers)
    for path in render_report(report, results, settings, out):
        print(path)
    return 0


def run_results(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    frame = ResultsIndex.scan(args.results or Path(params.paths.results)).frame
    if args.format == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        print(frame.to_markdown(index=False))
    return 0


def run_figures(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    results, out = _paths(args, params)
    for path in render_figures(results, out, params.model.fidelity, params.seeds[0], args.only or FIGURES):
        print(path)
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from pdd.reporting.gradcam import explain  # loads the teachers: only this command needs them

    params = params_from_args(args)
    for path in explain(params, args.out or Path(params.paths.tables), args.datasets, args.per_label):
        print(path)
    return 0


def _paths(args: argparse.Namespace, params) -> tuple[Path, Path]:
    return args.results or Path(params.paths.results), args.out or Path(params.paths.tables)


def _write(path: Path, text: str) -> None:
    atomic_write_text(path, text)
    print(path)
