"""Snakemake adapter: download one registry file (resumable, checksummed, atomic)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.download import fetch

    spec = snakemake.params.spec  # noqa: F821
    fetch(spec["url"], snakemake.output[0], sha256=spec.get("sha256"), size=spec.get("size"),  # noqa: F821
          lockfile=snakemake.params.lockfile)  # noqa: F821
