"""`pdd params check|show|plan`: validate params, print them resolved, list the runs they imply.

Snakemake reads the DAG from `pdd params plan --json`, so the workflow never re-implements the
profile and override logic of `pdd.config`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pdd.config import Params, add_params_arguments, params_from_args
from pdd.config.dvc_pipeline import render_dvc_yaml
from pdd.errors import ConfigError
from pdd.io import atomic_write_text


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
    plan.add_argument("--disk", action="store_true",
                      help="expected disk use per run and in total: snapshots, resumable checkpoint, teacher cache, "
                           "ready pixels")
    plan.set_defaults(func=_plan)
    dvc = actions.add_parser("dvc", help="write dvc.yaml: one stage per job of every profile's plan")
    dvc.add_argument("--params", default="params.yaml", metavar="FILE", help="params file (default: %(default)s)")
    dvc.add_argument("--out", default="dvc.yaml", metavar="FILE", help="where to write it (default: %(default)s)")
    dvc.add_argument("--check", action="store_true", help="only check that FILE is current; exit 2 if stale")
    dvc.set_defaults(func=_dvc)


def _check(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    print(f"{args.params}: OK (profile {params.profile}, {len(params.plan_runs())} runs, "
          f"sha256 {params.sha256()[:12]})")
    for line in _own_recipes(params).values():  # what a train.* edit does not reach
        print(f"# {line} (over train.* and teachers.*)")
    return 0


def _show(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    print(f"# resolved {args.params}, profile {params.profile}, sha256 {params.sha256()}")
    print(params.to_yaml(), end="")
    for line in _own_recipes(params, resolved=True).values():
        print(f"# {line}")
    return 0


def _own_recipes(params: Params, resolved: bool = False) -> dict[str, str]:
    """Variant -> one line, for each variant with a recipe or teachers of its own: what it sets (or, `resolved`,
    the recipe its runs train with, `Params.recipe`, without the keys its schedule does not read)."""
    lines = {}
    for name, variant in params.variants.items():
        own = variant.recipe_overrides()
        teachers = [teacher for teacher, entry in variant.teachers if entry is not None]
        if not own and not teachers:
            continue
        recipe = params.recipe(name)
        shown = {key: value for key, value in recipe.model_dump(mode="json").items()
                 if key not in recipe.unread} if resolved else own
        values = ", ".join(f"{key} {value}" for key, value in shown.items())
        tags = ", ".join(f"{teacher} {getattr(params.teachers_of(name), teacher).tag}" if teacher == "wrn50" else
                         teacher for teacher in teachers)
        lines[name] = (f"variant {name}: {'resolved' if resolved else 'own'} recipe {values}"
                       + (f"; own teachers: {tags}" if tags else ""))
    return lines


def _plan(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    if args.disk:
        from pdd.engine.disk import format_disk_plan, plan_disk

        plan = plan_disk(params, params.plan_runs(args.table))
        print(json.dumps(plan.as_dict(), indent=2) if args.json else format_disk_plan(plan, params))
        return 0
    if args.json:
        print(json.dumps(params.plan_summary(args.table), indent=2))
        return 0
    runs = params.plan_runs(args.table)
    for run in runs:
        print(params.run_dir(*run))
    print(f"# {len(runs)} runs, profile {params.profile}")
    planned = {run.variant for run in runs}
    for name, line in _own_recipes(params).items():
        if name in planned:
            print(f"# {line}")
    return 0


def _dvc(args: argparse.Namespace) -> int:
    text = render_dvc_yaml(args.params)
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            raise ConfigError(f"{out} does not match {args.params}; regenerate it with `pdd params dvc`")
        print(f"{out}: current")
        return 0
    atomic_write_text(out, text)
    print(f"wrote {out}")
    return 0
