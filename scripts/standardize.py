"""Snakemake adapter: raw input(s) of one registry entry -> the standardized AnnData."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.datasets import standardized_dataset
    from sclinbench.io import write_h5ad

    adata = standardized_dataset(snakemake.wildcards.dataset, snakemake.params.entry,  # noqa: F821
                                 list(snakemake.input), snakemake.params.qc,  # noqa: F821
                                 registry=snakemake.params.registry,  # noqa: F821
                                 lockfile=snakemake.params.lockfile)  # noqa: F821
    write_h5ad(adata, snakemake.output[0])  # noqa: F821
