"""Snakemake adapter: reference + query (+ orthologs) -> the labelled query and its tables."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.tool.rule import run_job
    from sclinbench.workflow.io import limit_threads

    with limit_threads(snakemake.threads):  # noqa: F821
        run_job(
            snakemake.wildcards.name, snakemake.params.job, snakemake.params.pipeline,  # noqa: F821
            snakemake.params.spec, reference=snakemake.input.reference, query=snakemake.input.query,  # noqa: F821
            orthologs=snakemake.input.get("orthologs"), outputs=dict(snakemake.output.items()),  # noqa: F821
            reference_species=snakemake.params.reference_species,  # noqa: F821
            query_species=snakemake.params.query_species, seed=snakemake.params.seed,  # noqa: F821
        )
