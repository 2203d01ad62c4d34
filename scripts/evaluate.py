"""Snakemake adapter: dataset + split table -> per-cell predictions of the job's pipelines."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.evaluate.engine import evaluate_file
    from sclinbench.evaluate.spec import parse_pipelines
    from sclinbench.workflow.contracts import read_splits, write_predictions
    from sclinbench.workflow.io import limit_threads

    with limit_threads(snakemake.threads):  # noqa: F821
        splits = read_splits(snakemake.input.splits)  # noqa: F821
        pipelines = parse_pipelines(snakemake.params.pipelines)  # noqa: F821 (the config's entries)
        predictions = evaluate_file(snakemake.input.data, splits, pipelines,  # noqa: F821
                                    snakemake.params.task, seed=snakemake.params.seed,  # noqa: F821
                                    dataset=snakemake.wildcards.dataset)  # noqa: F821
    write_predictions(predictions, snakemake.output[0])  # noqa: F821
