"""Snakemake adapter: Ensembl BioMart orthologs between two species at a pinned release."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.data.datasets import fetch_ensembl_orthologs

    w = snakemake.wildcards  # noqa: F821
    fetch_ensembl_orthologs(w.reference, w.other, int(w.release), snakemake.output[0])  # noqa: F821
