"""``pdd data download|prepare|synthetic|status``: the data steps that workflow rules call."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pdd.data.prepare import count_rows, verify_prepared
from pdd.data.registry import DATASETS, get_dataset
from pdd.data.split import SPLIT_FILE
from pdd.data.synthetic import VARIANTS, generate

DEFAULT_RAW_ROOT = Path("data/raw")
DEFAULT_PREPARED_ROOT = Path("data/prepared")


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="download, prepare and inspect the datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    download = commands.add_parser("download", help="fetch a dataset's raw files (or say how to get them)")
    download.add_argument("name", choices=DATASETS)
    download.add_argument("--raw", type=Path, help=f"raw folder (default: {DEFAULT_RAW_ROOT}/NAME)")
    download.set_defaults(func=_download)

    prepare = commands.add_parser("prepare", help="build train/, test/, ground_truth/ and split.csv from raw files")
    prepare.add_argument("name", choices=DATASETS)
    prepare.add_argument("--raw", type=Path, required=True, help="folder holding the raw download")
    prepare.add_argument("--out", type=Path, required=True, help="prepared dataset folder (replaced atomically)")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the train/test draw (default 0)")
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


def _download(args: argparse.Namespace) -> int:
    from pdd.data.download import download  # imports requests; keep `pdd --help` light

    spec = get_dataset(args.name)
    root = download(spec, args.raw or DEFAULT_RAW_ROOT / args.name)
    print(f"{spec.name}: raw data ready in {root}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    spec = get_dataset(args.name)
    report = spec.prepare(args.raw, args.out, seed=args.seed, exclude_unreadable=args.exclude_unreadable)
    counts = report.counts
    print(f"{spec.name}: prepared {args.out} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    for mismatch in spec.protocol_mismatches(counts):
        print(f"warning: {spec.name} {mismatch}", file=sys.stderr)
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    rows = generate(args.out, seed=args.seed, n_train=args.n_train, n_test_normal=args.n_test,
                    n_test_anomalous=args.n_test, size=args.size, name=args.name)
    print(f"{args.name}: synthetic stand-in in {args.out} "
          f"({', '.join(f'{k} {v}' for k, v in count_rows(rows).items())})")
    return 0


def dataset_state(name: str, raw: Path, prepared: Path) -> tuple[str, str]:
    """(state, detail) where state is missing | raw present | prepared | verified."""
    if (prepared / SPLIT_FILE).is_file():
        problems = verify_prepared(prepared)
        if not problems:
            return "verified", str(prepared)
        return "prepared", f"{len(problems)} problem(s), e.g. {problems[0]}; prepare it again"
    located = get_dataset(name).locate_raw(raw)
    if located is not None:
        return "raw present", str(located)
    return "missing", f"pdd data download {name} --raw {raw}"


def _status(args: argparse.Namespace) -> int:
    raw_root, prepared_root = DEFAULT_RAW_ROOT, DEFAULT_PREPARED_ROOT
    if args.params:
        from pdd.config import load_params

        paths = load_params(args.params).paths
        raw_root, prepared_root = Path(paths.raw), Path(paths.prepared)
    raw_root, prepared_root = args.raw_root or raw_root, args.prepared_root or prepared_root
    for name in DATASETS:
        state, detail = dataset_state(name, raw_root / name, prepared_root / name)
        print(f"{name:<11} {state:<12} {detail}")
    return 0
