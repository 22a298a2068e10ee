# The PDD replication pipeline lives in workflow/ (Snakemake's standard layout); this file only
# lets `snakemake` run from the repository root without `-s`.
include: "workflow/Snakefile"
