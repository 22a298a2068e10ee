"""`pdd weights fetch vmamba|wrn50`: the workflow's weights jobs put the teacher files named in params in place.

Resolution, download (resumable), sha256 checks and the offline instructions are `pdd.models.weights`';
this module only reads `params.teachers` and adds what params users can change to the messages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pdd.config import Params, add_params_arguments, params_from_args
from pdd.errors import WeightsError

TEACHERS = ("vmamba", "wrn50")
RANDOM_INIT_HINT = "; or run with random-init teachers (--set teachers.pretrained=false)"


def fetch_weights(params: Params, teacher: str) -> Path:
    """Return the verified file `params.teachers.<teacher>` names, downloading it first when it is missing."""
    from pdd.models.weights import WeightsSpec, ensure_weights  # lazily: every `pdd` command imports this module

    if teacher not in TEACHERS:
        raise WeightsError(f"unknown teacher {teacher!r}; use one of: {', '.join(TEACHERS)}")
    settings = getattr(params.teachers, teacher)
    spec = WeightsSpec(name=f"{teacher} teacher", filename=Path(settings.file).name, url=settings.url,
                       sha256=settings.sha256, pinned_by=f"teachers.{teacher}.sha256")
    return ensure_weights(spec, settings.file, hint=RANDOM_INIT_HINT)


def register(subparsers: argparse._SubParsersAction) -> None:
    weights = subparsers.add_parser("weights", help="fetch and verify the teachers' pretrained weights")
    actions = weights.add_subparsers(dest="weights_command", required=True)
    fetch = actions.add_parser("fetch", help="download (resuming a partial file) and verify a teacher checkpoint")
    fetch.add_argument("teachers", nargs="*", metavar="TEACHER",
                       help=f"which teachers ({', '.join(TEACHERS)}; default: both)")
    add_params_arguments(fetch)
    fetch.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    params = params_from_args(args)
    for teacher in args.teachers or TEACHERS:
        print(f"{teacher}: {fetch_weights(params, teacher)} OK")
    return 0
