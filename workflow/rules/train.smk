"""One training and one evaluation job per run of the plan (results/<dataset>/<variant>/<fidelity>/seed<k>)."""

RUN_DIR = f"{RESULTS}/{RUN_PATTERN}"
GPUS = 0 if PLAN["synthetic_data"] else 1
# the demo's jobs are small: run them side by side rather than one multi-threaded job at a time
TRAIN_THREADS = 1 if PLAN["synthetic_data"] else 8


rule train:
    input:
        data=lambda w: DATASETS[w.dataset]["prepared_dir"],
        weights=lambda w: run_of(w)["weights"],  # the teacher files this run loads (its variant's own, if any)
    # Only the completion marker is an output: Snakemake deletes the outputs of a failed job, and the
    # checkpoints and dvclive logs must survive a crash so that the rerun resumes (`--resume`).
    output:
        f"{RUN_DIR}/trained.json",
    log:
        f"{LOGS}/train/{RUN_PATTERN}.log",
    benchmark:
        f"{BENCHMARKS}/train/{RUN_PATTERN}.tsv"
    conda:
        "../../environment.yml"
    params:
        pdd=Unrecorded(PDD),
        args=Unrecorded(PARAMS_ARGS),
        run_dir=lambda w: run_of(w)["run_dir"],
        # reruns the job when a key that training reads changes (never on eval or reporting edits)
        fingerprint=lambda w: fingerprint(run_of(w)["fingerprints"]["train"]),
    threads: TRAIN_THREADS
    resources:
        gpu=GPUS,
        mem_mb=32000,
        runtime=24 * 60,
    shell:
        "{params.pdd} train {params.args} --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --fidelity {wildcards.fidelity} --seed {wildcards.seed} --out {params.run_dir}"
        " --resume --restart-if-changed --no-progress > {log} 2>&1"


rule evaluate:
    input:
        f"{RUN_DIR}/trained.json",
    output:
        f"{RUN_DIR}/metrics.json",
    log:
        f"{LOGS}/evaluate/{RUN_PATTERN}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{RUN_PATTERN}.tsv"
    conda:
        "../../environment.yml"
    params:
        pdd=Unrecorded(PDD),
        args=Unrecorded(PARAMS_ARGS),
        run_dir=lambda w: run_of(w)["run_dir"],
        fingerprint=lambda w: fingerprint(run_of(w)["fingerprints"]["evaluate"]),
    threads: min(TRAIN_THREADS, 4)
    resources:
        gpu=GPUS,
        mem_mb=16000,
        runtime=2 * 60,
    shell:
        "{params.pdd} evaluate {params.args} --run {params.run_dir} > {log} 2>&1"
