"""Snakemake adapter: predictions of a dataset x task -> per-fold scores, pooled summary with
intervals, paired differences, per-class F1, confusion counts, unseen-label calls."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.evaluate import intervals, metrics
    from sclinbench.workflow.contracts import read_predictions
    from sclinbench.workflow.io import write_table

    sm = snakemake  # noqa: F821
    predictions = read_predictions(sm.input)
    task = sm.params.task
    kind = task["kind"]
    write_table(metrics.score(predictions, kind), sm.output.scores)
    summary, paired = intervals.summarize_predictions(
        predictions, task, n_boot=sm.params.n_boot, level=sm.params.level, seed=sm.params.seed,
        key=f"{sm.wildcards.dataset}/{sm.wildcards.task}")
    write_table(summary, sm.output.summary)
    write_table(paired, sm.output.paired)
    write_table(metrics.per_class(predictions, kind), sm.output.per_class)
    write_table(metrics.confusion(predictions, kind), sm.output.confusion)
    write_table(metrics.unseen_labels(predictions), sm.output.unseen)
