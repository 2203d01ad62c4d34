"""Snakemake adapter: dataset + split table -> per-cell predictions of the job's pipelines."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    import anndata as ad

    from sclinbench.contracts import read_splits
    from sclinbench.evaluate import evaluate
    from sclinbench.io import limit_threads, write_table

    with limit_threads(snakemake.threads):  # noqa: F821
        adata = ad.read_h5ad(snakemake.input.data)  # noqa: F821
        splits = read_splits(snakemake.input.splits)  # noqa: F821
        predictions = evaluate(adata, splits, snakemake.params.pipelines, snakemake.params.task,  # noqa: F821
                               seed=snakemake.params.seed, dataset=snakemake.wildcards.dataset)  # noqa: F821
    write_table(predictions, snakemake.output[0])  # noqa: F821
