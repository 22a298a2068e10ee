"""Entry point: `snakemake` run from the repository root reads this file.

The workflow itself lives in workflow/Snakefile (Snakemake's standard layout); the default
execution profile in profiles/default/ is picked up automatically from here.
"""


include: "workflow/Snakefile"
