"""Snakemake adapter: predictions of a dataset x task -> scores, per-class F1, confusion counts."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench import metrics
    from sclinbench.io import write_table

    predictions = metrics.read_predictions(snakemake.input)  # noqa: F821
    kind = snakemake.params.task["kind"]  # noqa: F821
    pooled = snakemake.params.task["split"] == "donor_pseudobulk"  # noqa: F821  (leave-one-donor-out)
    write_table(metrics.score(predictions, kind, pooled=pooled), snakemake.output.scores)  # noqa: F821
    write_table(metrics.per_class(predictions, kind), snakemake.output.per_class)  # noqa: F821
    write_table(metrics.confusion(predictions, kind), snakemake.output.confusion)  # noqa: F821
