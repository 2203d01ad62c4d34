"""Every figure of the benchmark written at once (:func:`make_figures`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from sclinbench import report
from sclinbench.plotting.cross_species import cross_species_average_bars, cross_species_heatmap
from sclinbench.plotting.novel import novel_type_detection
from sclinbench.plotting.runtime import runtime_memory
from sclinbench.plotting.scores import disease_levels, normalization_model_heatmap, pipeline_scores
from sclinbench.plotting.styling import control_styles, pipeline_colors, save_figure
from sclinbench.workflow import contracts
from sclinbench.workflow.contracts import FIGURES


def make_figures(summary: pd.DataFrame, outdir: str | os.PathLike, metrics: pd.DataFrame | None = None,
                 reference: pd.DataFrame | None = None,
                 predictions: Mapping[tuple[str, str], pd.DataFrame] | pd.DataFrame | None = None,
                 benchmarks: pd.DataFrame | None = None, metric: str = "macro_f1",
                 dataset_aliases: Mapping[str, str] | None = None) -> dict[str, tuple[Path, Path]]:
    """Write every figure of :data:`~sclinbench.workflow.contracts.FIGURES` to ``outdir`` as PNG + PDF
    (placeholders where the run has no data for one).

    Parameters
    ----------
    summary
        The score stage's pooled scores with intervals (``results/summary.tsv``): every number in
        the figures comes from it or from ``metrics`` (nothing is re-summarized here).
    outdir
        e.g. ``results/figures``.
    metrics
        Per-fold scores (``results/metrics.tsv``), for the per-type novelty panel; optional.
    reference
        Published numbers (:func:`sclinbench.report.read_reference`), for the cross-species bars.
    predictions
        ``(dataset, task) ->`` per-cell predictions of each novel-type task (the ROC curves); optional.
    benchmarks
        :func:`read_benchmarks` output; optional.
    metric, dataset_aliases
        Passed on to the figures.

    Returns
    -------
    Stem -> (PNG path, PDF path).
    """
    outdir = Path(outdir)
    summary = contracts.check_summary(summary)
    view = report.summary_view(summary)
    controls = control_styles(summary)
    colors = pipeline_colors(sorted(pd.unique(summary["pipeline"])), controls)
    builders = {
        "cross_species_heatmap": lambda: cross_species_heatmap(summary, metric=metric),
        "cross_species_average": lambda: cross_species_average_bars(
            summary, reference, metric=metric, dataset_aliases=dataset_aliases, colors=colors, controls=controls),
        "pipeline_scores": lambda: pipeline_scores(view, metric, colors=colors, controls=controls),
        "normalization_model": lambda: normalization_model_heatmap(view, metric),
        "disease": lambda: disease_levels(view, metric, colors=colors, controls=controls),
        "novel_type": lambda: novel_type_detection(predictions, metrics, summary, colors=colors, controls=controls),
        "runtime_memory": lambda: runtime_memory(benchmarks if benchmarks is not None
                                                 else pd.DataFrame(columns=["rule", "job", "s", "max_rss"])),
    }
    written = {}
    for stem in FIGURES:
        fig = builders[stem]()
        written[stem] = save_figure(fig, outdir / f"{stem}.png", outdir / f"{stem}.pdf")
    return written
