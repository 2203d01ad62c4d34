"""Snakemake adapter: record what produced this run (versions, config hash, commit, checksums)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench import report
    from sclinbench.datasets import dataset_checksums

    sm = snakemake  # noqa: F821
    checksums = dataset_checksums(dict(zip(sm.params.datasets, sm.input)))
    prov = report.provenance(sm.params.config, checksums, repo_dir=sm.params.repo_dir)
    report.write_provenance(prov, sm.output.json, sm.output.md)
