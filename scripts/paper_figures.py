"""Snakemake adapter: summary + published numbers -> the paper's figures by name (results/paper/)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench import paper_figures, report
    from sclinbench.workflow import contracts

    sm = snakemake  # noqa: F821
    paper_figures.make_paper_figures(contracts.read_summary(sm.input.summary), sm.params.figures,
                                     sm.params.declared, sm.params.outdir,
                                     reference=report.read_reference(sm.input.reference))
