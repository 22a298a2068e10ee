"""``pdd data download|prepare|synthetic|status``: the data steps that workflow rules call."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pdd.data.prepare import count_rows, verify_prepared
from pdd.data.folder import FolderPreparer
from pdd.data.registry import DATASETS, dataset_spec, get_dataset
from pdd.data.split import SPLIT_FILE
from pdd.data.synthetic import VARIANTS, generate
from pdd.errors import DataError

DEFAULT_RAW_ROOT = Path("data/raw")
DEFAULT_PREPARED_ROOT = Path("data/prepared")


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="download, prepare and inspect the datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    download = commands.add_parser("download", help="fetch a dataset's raw files (or say how to get them)")
    download.add_argument("name", help=f"{', '.join(DATASETS)}, or a folder dataset of the params")
    download.add_argument("--raw", type=Path, help=f"raw folder (default: {DEFAULT_RAW_ROOT}/NAME)")
    _add_optional_params(download)
    download.set_defaults(func=_download)

    prepare = commands.add_parser("prepare", help="build train/, test/, ground_truth/ and split.csv from raw files")
    prepare.add_argument("name", help=f"{', '.join(DATASETS)}, or your own `kind: folder` dataset of the params")
    prepare.add_argument("--raw", type=Path, help="folder holding the raw download (default: from the params)")
    prepare.add_argument("--out", type=Path, help="prepared dataset folder, replaced atomically (default: from the "
                                                  "params)")
    prepare.add_argument("--seed", type=int, default=None, help="seed of the train/test draw (default: the params', "
                                                                "else 0)")
    _add_optional_params(prepare)
    prepare.add_argument("--exclude-unreadable", action="store_true",
                         help="leave corrupt images out (recorded in split.csv) instead of stopping")
    prepare.set_defaults(func=_prepare)

    synthetic = commands.add_parser("synthetic", help="write the synthetic stand-in of a dataset (demo)")
    synthetic.add_argument("name", choices=VARIANTS)
    synthetic.add_argument("--out", type=Path, required=True)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    synthetic.add_argument("--n-train", type=int, default=60, help="normal training images per class")
    synthetic.add_argument("--n-test", type=int, default=40, help="normal and anomalous test images per class (each)")
    synthetic.set_defaults(func=_synthetic)

    status = commands.add_parser("status", help="show each dataset as missing / raw present / prepared / verified")
    status.add_argument("--params", type=Path, help="take both roots from paths.raw and paths.prepared")
    status.add_argument("--raw-root", type=Path, help=f"default: {DEFAULT_RAW_ROOT}")
    status.add_argument("--prepared-root", type=Path, help=f"default: {DEFAULT_PREPARED_ROOT}")
    status.set_defaults(func=_status)


def _add_optional_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="params file defining the dataset (needed for your own datasets; default for them: "
                             "params.yaml)")
    parser.add_argument("--profile", default=None, help="apply profiles.<PROFILE>")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted-key override (repeatable)")


def _params_for(args: argparse.Namespace):
    """The params, when the command needs them: always with --params, else only for a non-registry name."""
    if args.params is None and args.name in DATASETS and not args.overrides and args.profile is None:
        return None
    from pdd.config import load_params

    return load_params(args.params or "params.yaml", overrides=args.overrides, profile=args.profile)


def _spec(args: argparse.Namespace):
    params = _params_for(args)
    entry = params.dataset(args.name) if params is not None else None
    return dataset_spec(args.name, entry), params


def _download(args: argparse.Namespace) -> int:
    from pdd.data.download import download  # imports requests; keep `pdd --help` light

    spec, params = _spec(args)
    raw = args.raw or (params.raw_dir(args.name) if params is not None else DEFAULT_RAW_ROOT / args.name)
    if isinstance(spec.preparer, FolderPreparer):
        if spec.locate_raw(raw) is None:
            raise DataError(f"{args.name} is your own dataset; nothing to download, but {raw} does not hold its "
                            f"{spec.preparer.layout} layout:\n{spec.preparer.expected_layout}")
        print(f"{args.name}: your folder {raw} is in place (nothing to download)")
        return 0
    root = download(spec, raw)
    print(f"{spec.name}: raw data ready in {root}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    spec, params = _spec(args)
    if params is None and (args.raw is None or args.out is None):
        raise DataError("pass --raw and --out, or --params to take them from the params")
    raw = args.raw or params.raw_dir(args.name)
    out = args.out or params.prepared_dir(args.name)
    seed = args.seed if args.seed is not None else (params.dataset_seed(args.name) if params is not None else 0)
    report = spec.prepare(raw, out, seed=seed, exclude_unreadable=args.exclude_unreadable)
    counts = report.counts
    print(f"{spec.name}: prepared {out} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    for mismatch in spec.protocol_mismatches(counts):
        print(f"warning: {spec.name} {mismatch}", file=sys.stderr)
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    rows = generate(args.out, seed=args.seed, n_train=args.n_train, n_test_normal=args.n_test,
                    n_test_anomalous=args.n_test, size=args.size, name=args.name)
    print(f"{args.name}: synthetic stand-in in {args.out} "
          f"({', '.join(f'{k} {v}' for k, v in count_rows(rows).items())})")
    return 0


def dataset_state(name: str, raw: Path, prepared: Path, spec=None) -> tuple[str, str]:
    """(state, detail) where state is missing | raw present | prepared | verified."""
    if (prepared / SPLIT_FILE).is_file():
        problems = verify_prepared(prepared)
        if not problems:
            return "verified", str(prepared)
        return "prepared", f"{len(problems)} problem(s), e.g. {problems[0]}; prepare it again"
    located = (spec or get_dataset(name)).locate_raw(raw)
    if located is not None:
        return "raw present", str(located)
    return "missing", f"pdd data download {name} --raw {raw}"


def _status(args: argparse.Namespace) -> int:
    raw_root, prepared_root = DEFAULT_RAW_ROOT, DEFAULT_PREPARED_ROOT
    folders = {}
    if args.params:
        from pdd.config import load_params

        params = load_params(args.params)
        raw_root, prepared_root = Path(params.paths.raw), Path(params.paths.prepared)
        folders = {name: entry for name, entry in params.data.datasets.items() if entry.kind == "folder"}
    raw_root, prepared_root = args.raw_root or raw_root, args.prepared_root or prepared_root
    for name in DATASETS:
        state, detail = dataset_state(name, raw_root / name, prepared_root / name)
        print(f"{name:<11} {state:<12} {detail}")
    for name, entry in folders.items():
        state, detail = dataset_state(name, Path(entry.root), prepared_root / name, dataset_spec(name, entry))
        print(f"{name:<11} {state:<12} {detail}")
    return 0
