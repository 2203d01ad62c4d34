"""Snakemake adapter: raw input(s) of one registry entry -> the standardized AnnData."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    import logging

    from sclinbench.data import manifest
    from sclinbench.data.datasets import standardized_dataset
    from sclinbench.workflow.io import write_h5ad

    sm = snakemake  # noqa: F821
    log = logging.getLogger("sclinbench.standardize")
    name, entry = sm.wildcards.dataset, sm.params.entry
    facts = f"{sm.scriptdir}/../config/paper_manifest.yaml"  # what is known about the paper's files
    for warning in manifest.check_download(name, entry, list(sm.input), facts):
        log.warning("%s", warning)
    adata = standardized_dataset(name, entry, list(sm.input), sm.params.qc, registry=sm.params.registry,
                                 lockfile=sm.params.lockfile, out=sm.output[0])  # large h5ad: streamed
    for line in manifest.describe(adata, name):  # per species: cells, cell types, donors found
        log.info("%s", line)
    for warning in manifest.check_standardized(name, entry, adata, facts):
        log.warning("%s", warning)
    if adata.X is not None:  # a streamed file is already written (its AnnData here has no X)
        write_h5ad(adata, sm.output[0])
