"""`pdd train` and `pdd evaluate`."""

from __future__ import annotations

import argparse

from pdd.config import FIDELITIES, RunSpec, add_params_arguments, params_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train one run (dataset x variant x fidelity x seed); under torchrun, data-parallel"
    )
    add_params_arguments(train)
    train.add_argument("--dataset", required=True, help="a name under params data.datasets")
    train.add_argument("--variant", required=True, help="a name under params variants (e.g. full, M3, full-nodiv)")
    train.add_argument("--fidelity", default=None, choices=FIDELITIES,
                       help="default: params model.fidelity")
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (see params.run_dir)")
    train.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last good checkpoint")
    train.add_argument("--restart-if-changed", action="store_true",
                       help="with --resume: if RUN_DIR was trained under other settings, train it again from scratch "
                            "instead of refusing (what a workflow rerun after a params change wants)")
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _add_device_argument(train)
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a trained run: metrics.json, scores_<scoring>.csv, maps/<scoring>.npz"
    )
    add_params_arguments(evaluate)
    evaluate.add_argument("--run", required=True, metavar="RUN_DIR", help="a run directory written by `pdd train`")
    evaluate.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _add_device_argument(evaluate)
    evaluate.set_defaults(func=_evaluate)


def _add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (default: with several GPUs, one no other pdd process holds; CUDA_VISIBLE_DEVICES "
                             "and torchrun's LOCAL_RANK are obeyed), cpu, cuda or cuda:N (pdd.devices)")


def _train(args: argparse.Namespace) -> int:
    from pdd.engine.train import train_run

    params = params_from_args(args)
    spec = RunSpec(args.dataset, args.variant, args.fidelity or params.model.fidelity, args.seed)
    params.run_dir(*spec)  # validates the dataset and variant names before anything is built
    result = train_run(params, spec, args.out, params_file=args.params, overrides=args.overrides,
                       resume=args.resume, restart_if_changed=args.restart_if_changed, progress=args.progress,
                       device=args.device)
    print(f"trained {spec.id}: {result.epochs} epochs, {result.global_step} steps, "
          f"{result.wall_time_s:.1f} s -> {result.run_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pdd.engine.evaluate import evaluate_run
    from pdd.engine.metrics import METRIC_NAMES

    document = evaluate_run(args.run, args.params, profile=args.profile, overrides=args.overrides,
                            progress=args.progress, device=args.device)
    for scoring, results in document["metrics"].items():
        for selection in ("last", "best_of_test"):
            pooled = results[selection]["pooled"]
            shown = ", ".join(f"{name} {pooled[name]:.4f}" for name in METRIC_NAMES if pooled[name] is not None)
            chosen = results[selection]
            by = f", selected by {chosen['selected_by']} AUROC" if chosen.get("selected_by") else ""
            print(f"{scoring} {selection} (epoch {chosen['epoch']}{by}): {shown}")
    return 0
