"""Snakemake adapter: record what produced this run (versions, config hash, commit, checksums, code)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench import report
    from sclinbench.data.datasets import dataset_checksums
    from sclinbench.workflow.records import code_provenance, read_job_records

    sm = snakemake  # noqa: F821
    checksums = dataset_checksums(dict(zip(sm.params.datasets, sm.input.datasets)))
    code = code_provenance([*sm.input.datasets, *sm.input.results], read_job_records(sm.params.logs),
                           sm.params.installed_code, measurements=sm.params.benchmarks)
    # the clone's location is not a param: copying a finished run elsewhere reruns nothing
    prov = report.provenance(sm.params.config, checksums, repo_dir=f"{sm.scriptdir}/..", code=code)
    report.write_provenance(prov, sm.output.json, sm.output.md)
