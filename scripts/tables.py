"""Snakemake adapter: metrics.tsv -> summary tables with CIs and results/README.md."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    import json
    from pathlib import Path

    from sclinbench import report

    sm = snakemake  # noqa: F821
    metrics = report.read_metrics(sm.input.metrics)
    reference = report.read_reference(sm.input.reference)
    kw = dict(n_boot=sm.params.n_boot, level=sm.params.level, seed=sm.params.seed, counts=sm.params.counts)
    report.write_tables(metrics, reference, Path(sm.output.readme).parent / "tables", tasks=sm.params.tasks, **kw)
    provenance = json.loads(Path(sm.input.provenance).read_text())
    report.write_results_readme(metrics, reference, sm.output.readme, provenance=provenance, **kw)
