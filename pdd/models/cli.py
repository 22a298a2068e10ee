"""`pdd weights fetch vmamba|wrn50 [--variant V]`: the workflow's weights jobs put the teacher files named in params
(globally, or by a variant for its own runs) in place;
`pdd weights import-official FILE...`: a run directory of the authors' checkpoints (`pdd.engine.import_official`).

Resolution, download (resumable), sha256 checks and the offline instructions are `pdd.models.weights`';
this module only reads `params.teachers` and adds what params users can change to the messages.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from pdd.config import Params, add_params_arguments, params_from_args
from pdd.errors import WeightsError
from pdd.models.pretrained import VMAMBA_TINY_WEIGHTS, WRN50_WEIGHTS

TEACHERS = ("vmamba", "wrn50")
RANDOM_INIT_HINT = "; or run with random-init teachers (--set teachers.pretrained=false)"


def fetch_weights(params: Params, teacher: str, variant: str | None = None) -> Path:
    """Return the verified file `params.teachers.<teacher>` names (`variant`'s own teacher where it names one,
    `Params.teachers_of`), downloading it first when it is missing."""
    from pdd.models.weights import ensure_weights  # lazily: every `pdd` command imports this module

    if teacher not in TEACHERS:
        raise WeightsError(f"unknown teacher {teacher!r}; use one of: {', '.join(TEACHERS)}")
    settings = getattr(params.teachers_of(variant), teacher)
    own = variant is not None and getattr(params.variant(variant).teachers, teacher) is not None
    pinned = VMAMBA_TINY_WEIGHTS if teacher == "vmamba" else WRN50_WEIGHTS[settings.tag]
    # a url of one's own is checked only against a sha256 of one's own; the pin's file also by its name's digits
    sha256 = settings.sha256 or (pinned.sha256 if settings.url == pinned.url else None)
    spec = replace(pinned, filename=Path(settings.file).name, url=settings.url, sha256=sha256,
                   pinned_by=f"{'variants.' + variant + '.' if own else ''}teachers.{teacher}.sha256")
    return ensure_weights(spec, settings.file, hint=RANDOM_INIT_HINT)


def register(subparsers: argparse._SubParsersAction) -> None:
    weights = subparsers.add_parser(
        "weights", help="fetch and verify the teachers' pretrained weights; import the authors' checkpoints")
    actions = weights.add_subparsers(dest="weights_command", required=True)
    fetch = actions.add_parser("fetch", help="download (resuming a partial file) and verify a teacher checkpoint")
    fetch.add_argument("teachers", nargs="*", metavar="TEACHER",
                       help=f"which teachers ({', '.join(TEACHERS)}; default: every teacher file params name, the "
                            "variants' own included)")
    fetch.add_argument("--variant", default=None,
                       help="the teacher files this variant's runs use (its own where it names them)")
    add_params_arguments(fetch)
    fetch.set_defaults(func=_fetch)
    official = actions.add_parser(
        "import-official", help="make a pdd run directory of checkpoints the authors' training script saved")
    official.add_argument("files", nargs="+", metavar="FILE",
                          help="epoch_E_auc=A.pth files of scripts/train_two_twins_ddp.py (or decoder state dicts)")
    add_params_arguments(official)
    official.add_argument("--dataset", required=True, help="a name under params data.datasets (its test split)")
    official.add_argument("--variant", default="full", help="a params variant of arch full (default: %(default)s)")
    official.add_argument("--seed", type=int, default=0, help="the run's seed slot (default: %(default)s)")
    official.add_argument("--epoch", type=int, default=None,
                          help="the epoch of a single FILE that carries none (no 'epoch' entry, no epoch_E name)")
    official.add_argument("--out", required=True, metavar="RUN_DIR", help="a new run directory")
    official.set_defaults(func=_import_official)


def _fetch(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    if args.teachers or args.variant is not None:
        wanted = [(teacher, args.variant) for teacher in args.teachers or TEACHERS]
    else:
        wanted = [(job.teacher, job.variant) for job in params.weights_jobs()]
    for teacher, variant in wanted:
        print(f"{teacher}{'' if variant is None else ' of ' + variant}: {fetch_weights(params, teacher, variant)} OK")
    return 0


def _import_official(args: argparse.Namespace) -> int:
    from pdd.engine.import_official import import_official

    directory = import_official(args.files, args.dataset, args.out, params_file=args.params, profile=args.profile,
                                overrides=args.overrides, variant=args.variant, seed=args.seed, epoch=args.epoch)
    print(f"imported {len(args.files)} official checkpoint(s) -> {directory.root}; score them with "
          f"`pdd evaluate --run {directory.root}`")
    return 0
