"""Snakemake adapter: one standardized dataset + STRING links/aliases -> TF target recovery tables."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.analyses import tf_targets

    sm = snakemake  # noqa: F821
    tf_targets.run_job(sm.input.h5ad, sm.wildcards.dataset, sm.params.settings, sm.input.links, sm.input.aliases,
                       sm.output.table, sm.output.grid, sm.output.genes, seed=sm.params.seed, level=sm.params.level)
