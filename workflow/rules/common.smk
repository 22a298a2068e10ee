"""The plan, read once from `pdd params plan --json`; helpers every rule file uses."""

import json
import re
import shlex
import subprocess

from snakemake.exceptions import WorkflowError


def _params_argv():
    """`--params FILE --set ...` exactly as every `pdd` job gets them (the profile travels as a --set)."""
    argv = ["--params", config.get("params", "params.yaml")]
    if config.get("profile"):
        argv.append(f"--set=profile={config['profile']}")
    overrides = config.get("set") or []
    for override in [overrides] if isinstance(overrides, str) else overrides:
        argv.append(f"--set={override}")
    return argv


class Unrecorded:
    """A `params:` value that the shell gets as its text and Snakemake's params rerun trigger never sees.

    Snakemake records every str/int/list params value of a finished job and reruns the job when that set
    changes; only each rule's `fingerprint` is meant to do that. The values wrapped in this are the same
    for every job of one invocation (the `pdd` command, `--params/--set` arguments, results/tables
    folders), but they differ between invocations: recorded as plain strings, one `--config set=[...]`
    override or another `--config pdd=...` would rerun every job, training included, whichever keys it
    reads. A non-builtin value is left out of the record (and, unlike a plain string, is not formatted
    with the job's wildcards, so braces in an override stay as they are); `{params.x}` formats it back
    to exactly the text the shell got before these went through `params:`."""

    def __init__(self, text):
        self.text = str(text)

    def __str__(self):
        return self.text

    def __format__(self, spec):
        return format(self.text, spec)

    def __repr__(self):
        return f"Unrecorded({self.text!r})"


PDD = config.get("pdd", "pdd")
PARAMS_ARGV = _params_argv()
PARAMS_ARGS = shlex.join(PARAMS_ARGV)


def _read_plan():
    # a bad params value stops the workflow here, before any job, with pdd's message naming the key
    command = [*shlex.split(PDD), "params", "plan", "--json", *PARAMS_ARGV]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise WorkflowError(f"cannot run {command[0]!r} ({exc}); install pdd (`make venv`) or pass --config pdd=...")
    if result.returncode != 0:
        raise WorkflowError(result.stderr.strip() or f"{shlex.join(command)} failed")
    return json.loads(result.stdout)


PLAN = _read_plan()
PATHS = PLAN["paths"]
RESULTS = PATHS["results"]
TABLES = PATHS["tables"]
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
DATASETS = PLAN["datasets"]
RUNS = {run["id"]: run for run in PLAN["runs"]}
# the global teachers' files (Fig. 1's); each run's own are its `weights` (empty for random-init teachers)
GLOBAL_WEIGHTS = [entry["file"] for entry in PLAN["weights"].values() if entry["variant"] is None]
REPORTS = PLAN["reports"]  # report job -> its fingerprint

TABLE_FILES = [f"{TABLES}/{table}.tex" for table in PLAN["tables"]]
REPLICATION_REPORT = [f"{TABLES}/{name}" for name in PLAN["report_outputs"]]
# the runs of the plan's tables (figure_runs only feed the figures)
TABLE_RUNS = list(dict.fromkeys(run_id for run_ids in PLAN["tables"].values() for run_id in run_ids))
REPORT_FILES = [*TABLE_FILES, *REPLICATION_REPORT, f"{TABLES}/figures", f"{TABLES}/explain"]
RUN_PATTERN = "{dataset}/{variant}/{fidelity}/seed{seed}"


def _one_of(names):
    return "|".join(sorted((re.escape(name) for name in names), key=len, reverse=True))


wildcard_constraints:
    dataset=_one_of(DATASETS),
    variant=_one_of({run["variant"] for run in RUNS.values()}),
    fidelity=_one_of({run["fidelity"] for run in RUNS.values()}),
    seed=r"\d+",
    table=_one_of(PLAN["tables"]),


def run_of(wildcards):
    return RUNS[f"{wildcards.dataset}/{wildcards.variant}/{wildcards.fidelity}/seed{wildcards.seed}"]


def fingerprint(job):
    """A job's params fingerprint (`pdd params plan --json`): Snakemake reruns the job when it changes, and
    only then; `pdd.config.fingerprints` says which keys each job reads."""
    return job["fingerprint"]["sha256"] if "fingerprint" in job else job["sha256"]


def metrics_of(run_ids):
    return [f"{RUNS[run_id]['run_dir']}/metrics.json" for run_id in run_ids]
