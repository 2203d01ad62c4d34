"""Snakemake adapter: the score stage's tables -> summary tables (TSV + Markdown) and results/README.md."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../src")  # noqa: F821
from sclinbench.workflow.io import script_errors  # noqa: E402

with script_errors(snakemake.log[0]):  # noqa: F821
    import json
    from pathlib import Path

    from sclinbench import report
    from sclinbench.workflow import contracts

    sm = snakemake  # noqa: F821
    metrics = contracts.read_metrics(sm.input.metrics)
    summary = contracts.read_summary(sm.input.summary)
    paired = contracts.read_paired(sm.input.paired)
    unseen = contracts.read_unseen(sm.input.unseen)
    reference = report.read_reference(sm.input.reference)
    selection = (report.read_selection(sm.input.selection, sm.params.selection_datasets,
                                       sm.params.selection_tasks) if sm.params.selection_tasks else None)
    kw = dict(declared=sm.params.declared, level=sm.params.level, n_boot=sm.params.n_boot,
              counts=sm.params.counts, selection=selection)
    report.write_tables(metrics, summary, paired, reference, Path(sm.output.readme).parent / "tables",
                        tasks=sm.params.tasks, unseen=unseen, **kw)
    provenance = json.loads(Path(sm.input.provenance).read_text())
    analyses = sm.input.get("analyses", [])  # the analyses' README section, when the run has analyses
    sections = [Path(f).read_text() for f in ([analyses] if isinstance(analyses, str) else analyses)]
    report.write_results_readme(summary, paired, reference, sm.output.readme, provenance=provenance,
                                sections=sections, **kw)
