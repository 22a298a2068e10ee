"""LaTeX tables (rendered only from metrics.json), figures and the teachers' Grad-CAM (Fig. 1)."""


rule table:
    input:
        lambda w: metrics_of(PLAN["tables"][w.table]),
    output:
        report(f"{TABLES}/{{table}}.tex", category="Tables"),
    log:
        f"{LOGS}/tables/{{table}}.log",
    shell:
        "{PDD} tables {PARAMS_ARGS} --results {RESULTS} --out {TABLES} --table {wildcards.table} > {log} 2>&1"


rule figures:
    input:
        metrics_of(RUNS),
    output:
        directory(f"{TABLES}/figures"),
    log:
        f"{LOGS}/figures.log",
    shell:
        "{PDD} figures {PARAMS_ARGS} --results {RESULTS} --out {output} > {log} 2>&1"


rule explain:
    input:
        data=[dataset["prepared_dir"] for dataset in DATASETS.values()],
        weights=list(WEIGHTS.values()),
    output:
        directory(f"{TABLES}/explain"),
    log:
        f"{LOGS}/explain.log",
    shell:
        "{PDD} explain {PARAMS_ARGS} --out {output} > {log} 2>&1"
