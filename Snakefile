"""Entry point: `snakemake` run from the repository root reads this file.

The rules live in workflow/ (Snakemake's standard layout); the default execution profile in
profiles/default/ is picked up automatically from here. Included files cannot set the default
target, so `all` is declared here.
"""


include: "workflow/Snakefile"


rule all:
    default_target: True
    input:
        REPORT_FILES,
