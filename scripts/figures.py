"""Snakemake adapter: summary + metrics (+ novel-type predictions, benchmark records) -> every figure."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench import contracts, plotting, report

    sm = snakemake  # noqa: F821
    predictions = contracts.read_predictions(sm.input.novel) if sm.input.novel else None
    plotting.make_figures(contracts.read_summary(sm.input.summary), sm.params.outdir,
                          metrics=contracts.read_metrics(sm.input.metrics),
                          reference=report.read_reference(sm.input.reference), predictions=predictions,
                          benchmarks=plotting.read_benchmarks(sm.params.benchmarks),
                          novel_type_title=sm.params.novel_title, novel_type_dataset=sm.params.novel_dataset)
