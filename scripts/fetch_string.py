"""Snakemake adapter: download one STRING file (resumable, content-checked, checksummed, atomic)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench.data.download import DEFAULT_DEADLINE, fetch

    spec = snakemake.params.spec  # noqa: F821
    settings = snakemake.config.get("download") or {}  # noqa: F821
    fetch(spec["url"], snakemake.output[0], sha256=spec.get("sha256"), size=spec.get("size"),  # noqa: F821
          lockfile=snakemake.params.lockfile, expect="text",  # noqa: F821
          deadline=settings.get("deadline", DEFAULT_DEADLINE), timeout=settings.get("timeout", 60),
          retries=settings.get("retries", 4))
