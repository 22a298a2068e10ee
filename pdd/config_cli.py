"""`pdd params check|show|plan`: validate params, print them resolved, list the runs they imply.

Snakemake reads the DAG from `pdd params plan --json`, so the workflow never re-implements the
profile and override logic of `pdd.config`.
"""

from __future__ import annotations

import argparse
import json

from pdd.config import add_params_arguments, params_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    params_parser = subparsers.add_parser("params", help="validate and inspect params.yaml")
    actions = params_parser.add_subparsers(dest="params_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_params_arguments(common)

    check = actions.add_parser("check", parents=[common], help="validate; exit 2 naming the bad key")
    check.set_defaults(func=_check)
    show = actions.add_parser("show", parents=[common], help="print the resolved params as YAML")
    show.set_defaults(func=_show)
    plan = actions.add_parser("plan", parents=[common], help="list the runs the tables need")
    plan.add_argument("--table", default=None, help="only the runs of this table (e.g. table1)")
    plan.add_argument("--json", action="store_true", help="machine-readable plan (what Snakemake reads)")
    plan.set_defaults(func=_plan)


def _check(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    print(f"{args.params}: OK (profile {params.profile}, {len(params.plan_runs())} runs, "
          f"sha256 {params.sha256()[:12]})")
    return 0


def _show(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    print(f"# resolved {args.params}, profile {params.profile}, sha256 {params.sha256()}")
    print(params.to_yaml(), end="")
    return 0


def _plan(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    if args.json:
        print(json.dumps(params.plan_summary(args.table), indent=2))
        return 0
    runs = params.plan_runs(args.table)
    for run in runs:
        print(params.run_dir(*run))
    print(f"# {len(runs)} runs, profile {params.profile}")
    return 0
