"""Snakemake adapter: every file of the score stage -> results/metrics.tsv, summary.tsv, paired.tsv,
unseen_labels.tsv (one tidy table each)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.evaluate.metrics import assemble
    from sclinbench.workflow.io import write_table

    sm = snakemake  # noqa: F821
    args = (sm.params.datasets, sm.params.task_of, sm.params.tasks, sm.params.pipelines)
    for name in ("scores", "summary", "paired", "unseen"):
        write_table(assemble(list(sm.input[name]), *args, kind=name), sm.output[name])
