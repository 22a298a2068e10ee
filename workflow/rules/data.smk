"""Data and teacher weights: the first jobs to fail, with the dataset's own instructions, when
something cannot be fetched (registration-only datasets, no network)."""

if PLAN["synthetic_data"]:

    rule synthetic_data:
        """The demo's stand-in for every dataset: a generated, prepared dataset (no download)."""
        output:
            directory(f"{PATHS['prepared']}/{{dataset}}"),
        log:
            f"{LOGS}/data/{{dataset}}.log",
        conda:
            "../../environment.yml"
        params:
            pdd=Unrecorded(PDD),
            seed=lambda w: DATASETS[w.dataset]["seed"],
            fingerprint=lambda w: fingerprint(DATASETS[w.dataset]),
            counts=lambda w: shlex.join(
                [f"--{key.replace('_', '-')}={value}" for key, value in PLAN["synthetic"].items()]
            ),
        shell:
            "{params.pdd} data synthetic {wildcards.dataset} --out {output} --seed {params.seed} {params.counts}"
            " > {log} 2>&1"

else:

    rule download:
        """Fetch the raw files, or stop with where to get them; already-present raw data is kept (a folder
        dataset's root is never written: the job only checks it is there)."""
        output:
            directory(f"{PATHS['raw']}/{{dataset}}"),
        log:
            f"{LOGS}/data/{{dataset}}-download.log",
        priority: 10  # data problems surface first, before hours of other jobs
        conda:
            "../../environment.yml"
        params:
            pdd=Unrecorded(PDD),
            args=Unrecorded(PARAMS_ARGS),
        shell:
            "{params.pdd} data download {wildcards.dataset} --raw {output} {params.args} > {log} 2>&1"

    rule prepare:
        """Raw files -> train/good, test/<label>, ground_truth/, split.csv (checked and seeded)."""
        input:
            lambda w: DATASETS[w.dataset]["raw_dir"],
        output:
            directory(f"{PATHS['prepared']}/{{dataset}}"),
        log:
            f"{LOGS}/data/{{dataset}}-prepare.log",
        priority: 10
        conda:
            "../../environment.yml"
        params:
            pdd=Unrecorded(PDD),
            args=Unrecorded(PARAMS_ARGS),
            seed=lambda w: DATASETS[w.dataset]["seed"],
            fingerprint=lambda w: fingerprint(DATASETS[w.dataset]),
        shell:
            "{params.pdd} data prepare {wildcards.dataset} --raw {input} --out {output} --seed {params.seed} {params.args}"
            " > {log} 2>&1"


for _job, _entry in PLAN["weights"].items():

    rule:
        """A teacher's weights file: a global teacher's, or one a variant names for its own runs (`wrn50@rd4ad`)."""
        name:
            f"weights_{_entry['rule']}"
        output:
            _entry["file"],
        log:
            f"{LOGS}/weights/{_job}.log",
        conda:
            "../../environment.yml"
        params:
            pdd=Unrecorded(PDD),
            args=Unrecorded(PARAMS_ARGS),
            teacher=_entry["teacher"],
            variant="" if _entry["variant"] is None else f"--variant {_entry['variant']}",
            fingerprint=fingerprint(_entry),
        shell:
            "{params.pdd} weights fetch {params.teacher} {params.variant} {params.args} > {log} 2>&1"
