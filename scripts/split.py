"""Snakemake adapter: standardized dataset -> split table."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821  (works with --sdm conda too)
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    import anndata as ad

    from sclinbench.evaluate.splits import make_splits
    from sclinbench.workflow.io import write_table

    obs = ad.read_h5ad(snakemake.input[0], backed="r").obs  # noqa: F821  (obs only; X stays on disk)
    table = make_splits(obs, snakemake.params.task, seed=snakemake.params.seed,  # noqa: F821
                        dataset=snakemake.wildcards.dataset)  # noqa: F821
    write_table(table, snakemake.output[0])  # noqa: F821
