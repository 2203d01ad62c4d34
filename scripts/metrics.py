"""Snakemake adapter: every score file -> results/metrics.tsv (one tidy table)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.io import write_table
    from sclinbench.metrics import assemble

    table = assemble(list(snakemake.input), snakemake.params.datasets, snakemake.params.task_of,  # noqa: F821
                     snakemake.params.tasks, snakemake.params.pipelines)  # noqa: F821
    write_table(table, snakemake.output[0])  # noqa: F821
