"""Snakemake adapter: summary + metrics (+ novel-type predictions, benchmark records) -> every figure."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    from sclinbench import plotting, report
    from sclinbench.workflow import contracts

    sm = snakemake  # noqa: F821
    predictions = {tuple(key.split("/")): contracts.read_predictions(files) for key, files in sm.params.novel.items()}
    plotting.make_figures(contracts.read_summary(sm.input.summary), sm.params.outdir,
                          metrics=contracts.read_metrics(sm.input.metrics),
                          reference=report.read_reference(sm.input.reference), predictions=predictions,
                          benchmarks=plotting.read_benchmarks(sm.input.benchmarks, folder=sm.params.benchmarks))
