"""Snakemake adapter: dataset + split table -> predictions of the task's nested pipelines and the
table of which candidate each outer fold chose."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    import anndata as ad

    from sclinbench.evaluate.nested import evaluate_nested
    from sclinbench.evaluate.spec import parse_pipelines
    from sclinbench.workflow.contracts import read_splits, write_predictions
    from sclinbench.workflow.io import limit_threads, write_table

    sm = snakemake  # noqa: F821
    with limit_threads(sm.threads):
        pipelines = parse_pipelines(sm.params.pipelines)  # nested entries, candidates resolved
        predictions, selection = evaluate_nested(
            ad.read_h5ad(sm.input.data), read_splits(sm.input.splits), pipelines, sm.params.task,
            seed=sm.params.seed, dataset=sm.wildcards.dataset)
    write_predictions(predictions, sm.output.predictions)
    write_table(selection, sm.output.selection)
