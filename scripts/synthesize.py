"""Snakemake adapter: write the seeded synthetic atlas (per-species counts + orthology table)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.data.synthetic import write_atlas

    write_atlas(snakemake.output[0], **snakemake.params.synthetic)  # noqa: F821
