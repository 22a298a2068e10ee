"""LaTeX tables (rendered only from metrics.json), the replication report, figures and the teachers' Grad-CAM
(Fig. 1)."""


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


rule replication_report:
    """Does each claim of the paper hold: every cell with its interval and verdict, the claims tested, the
    paper's audit against itself, the selection optimism and the forest plot (docs/reporting.md)."""
    input:
        metrics_of(TABLE_RUNS),
    output:
        report(REPLICATION_REPORT[0], category="Tables"),
        REPLICATION_REPORT[1:],
    log:
        f"{LOGS}/tables/replication_report.log",
    threads: 2  # one dataset's resampling per process
    conda:
        "../../environment.yml"
    params:
        pdd=Unrecorded(PDD),
        args=Unrecorded(PARAMS_ARGS),
        results=Unrecorded(RESULTS),
        tables=Unrecorded(TABLES),
        fingerprint=fingerprint(REPORTS["replication_report"]),
    shell:
        "{params.pdd} report {params.args} --results {params.results} --out {params.tables} --workers {threads} > {log} 2>&1"


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
        weights=GLOBAL_WEIGHTS,
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
