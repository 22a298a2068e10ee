"""LaTeX tables (rendered only from metrics.json), figures and the teachers' Grad-CAM (Fig. 1)."""


rule table:
    input:
        lambda w: metrics_of(PLAN["tables"][w.table]),
    output:
        report(f"{TABLES}/{{table}}.tex", category="Tables"),
    log:
        f"{LOGS}/tables/{{table}}.log",
    conda:
        "../../environment.yml"
    params:
        pdd=Unrecorded(PDD),
        args=Unrecorded(PARAMS_ARGS),
        results=Unrecorded(RESULTS),
        tables=Unrecorded(TABLES),
        fingerprint=lambda w: fingerprint(REPORTS[w.table]),
    shell:
        "{params.pdd} tables {params.args} --results {params.results} --out {params.tables} --only {wildcards.table} > {log} 2>&1"


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
    conda:
        "../../environment.yml"
    params:
        pdd=Unrecorded(PDD),
        args=Unrecorded(PARAMS_ARGS),
        results=Unrecorded(RESULTS),
        tables=Unrecorded(TABLES),
        fingerprint=fingerprint(REPORTS["replication_gap"]),
    shell:
        "{params.pdd} tables {params.args} --results {params.results} --out {params.tables} > {log} 2>&1"


rule figures:
    input:
        metrics_of(RUNS),
    output:
        directory(f"{TABLES}/figures"),
    log:
        f"{LOGS}/figures.log",
    conda:
        "../../environment.yml"
    params:
        pdd=Unrecorded(PDD),
        args=Unrecorded(PARAMS_ARGS),
        results=Unrecorded(RESULTS),
        fingerprint=fingerprint(REPORTS["figures"]),
    shell:
        "{params.pdd} figures {params.args} --results {params.results} --out {output} > {log} 2>&1"


rule explain:
    input:
        data=[DATASETS[name]["prepared_dir"] for name in PLAN["explain_datasets"]],
        weights=list(WEIGHTS.values()),
    output:
        directory(f"{TABLES}/explain"),
    log:
        f"{LOGS}/explain.log",
    conda:
        "../../environment.yml"
    params:
        pdd=Unrecorded(PDD),
        args=Unrecorded(PARAMS_ARGS),
        datasets=" ".join(PLAN["explain_datasets"]),
        fingerprint=fingerprint(REPORTS["explain"]),
    shell:
        "{params.pdd} explain {params.args} --datasets {params.datasets} --out {output} > {log} 2>&1"
