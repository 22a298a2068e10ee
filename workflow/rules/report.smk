"""LaTeX tables (rendered only from metrics.json), figures and the teachers' Grad-CAM (Fig. 1)."""


rule table:
    input:
        lambda w: metrics_of(PLAN["tables"][w.table]),
    output:
        report(f"{TABLES}/{{table}}.tex", category="Tables"),
    log:
        f"{LOGS}/tables/{{table}}.log",
    params:
        fingerprint=lambda w: fingerprint(REPORTS[w.table]),
    shell:
        "{PDD} tables {PARAMS_ARGS} --results {RESULTS} --out {TABLES} --only {wildcards.table} > {log} 2>&1"


rule replication_gap:
    """Ours vs the paper for every table; after the tables, since each table job also writes a partial gap."""
    input:
        TABLE_FILES,
        metrics_of(RUNS),
    output:
        report(f"{TABLES}/replication_gap.md", category="Tables"),
        f"{TABLES}/replication_gap.tex",
    log:
        f"{LOGS}/tables/replication_gap.log",
    params:
        fingerprint=fingerprint(REPORTS["replication_gap"]),
    shell:
        "{PDD} tables {PARAMS_ARGS} --results {RESULTS} --out {TABLES} > {log} 2>&1"


rule figures:
    input:
        metrics_of(RUNS),
    output:
        directory(f"{TABLES}/figures"),
    log:
        f"{LOGS}/figures.log",
    params:
        fingerprint=fingerprint(REPORTS["figures"]),
    shell:
        "{PDD} figures {PARAMS_ARGS} --results {RESULTS} --out {output} > {log} 2>&1"


rule explain:
    input:
        data=[DATASETS[name]["prepared_dir"] for name in PLAN["explain_datasets"]],
        weights=list(WEIGHTS.values()),
    output:
        directory(f"{TABLES}/explain"),
    log:
        f"{LOGS}/explain.log",
    params:
        datasets=" ".join(PLAN["explain_datasets"]),
        fingerprint=fingerprint(REPORTS["explain"]),
    shell:
        "{PDD} explain {PARAMS_ARGS} --datasets {params.datasets} --out {output} > {log} 2>&1"
