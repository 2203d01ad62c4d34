"""Snakemake adapter: per-dataset analysis tables -> results/analyses/*.tsv, figures, README section."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.analyses import report

    sm = snakemake  # noqa: F821
    report.gather({stem: list(sm.input.get(stem, [])) for stem in report.TABLES}, sm.params.outdir,
                  sm.input.published, level=sm.params.level)
