"""Snakemake adapter: one standardized dataset -> manifold linearity (per draw, summary)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.analyses import manifold

    sm = snakemake  # noqa: F821
    manifold.run_job(sm.input.h5ad, sm.wildcards.dataset, sm.params.settings, sm.output.table, sm.output.summary,
                     seed=sm.params.seed, level=sm.params.level)
