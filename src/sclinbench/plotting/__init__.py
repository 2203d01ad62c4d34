"""Figures of the benchmark, from the tidy metrics table and its summaries.

One style for every figure: the Okabe-Ito colour-blind-safe palette (one colour per method
pipeline, greys for controls, hatched light bars for published numbers), 7-pt text sized for a
journal column (3.5 in single, 7.2 in double), ``viridis`` for heatmaps. Figures are built on
:class:`matplotlib.figure.Figure` directly (the Agg canvas; pyplot's global state is never
touched) and saved as PNG (300 dpi) and PDF atomically by :func:`save_figure`.

Every ``*`` function returns a Figure; when its input has no data for it (e.g. a run without a
cross-species task) it returns a placeholder figure that says what is missing, so the workflow
always writes the same files.

One module per figure family:

- :mod:`~sclinbench.plotting.styling`       palette, sizes, :func:`style`, :func:`save_figure`,
                                            :func:`placeholder_figure`
- :mod:`~sclinbench.plotting.cross_species` :func:`cross_species_heatmap`, :func:`cross_species_average_bars`
- :mod:`~sclinbench.plotting.scores`        :func:`pipeline_scores`, :func:`normalization_model_heatmap`,
                                            :func:`disease_levels`
- :mod:`~sclinbench.plotting.novel`         :func:`novelty_roc`, :func:`novel_type_detection`
- :mod:`~sclinbench.plotting.runtime`       :func:`read_benchmarks`, :func:`runtime_memory`
- :mod:`~sclinbench.plotting.figures`       :func:`make_figures` (every figure, stems :data:`FIGURES`)
"""

from sclinbench.plotting.cross_species import cross_species_average_bars, cross_species_heatmap
from sclinbench.plotting.figures import make_figures
from sclinbench.plotting.novel import novel_type_detection, novelty_roc
from sclinbench.plotting.runtime import read_benchmarks, runtime_memory
from sclinbench.plotting.scores import disease_levels, normalization_model_heatmap, pipeline_scores
from sclinbench.plotting.styling import (
    CONTROL_LINESTYLES,
    CONTROL_MARKERS,
    DOUBLE_COLUMN,
    DPI,
    EMBEDDING_NOTE,
    HEATMAP_CMAP,
    METHOD_COLORS,
    MODEL_ORDER,
    OKABE_ITO,
    PUBLISHED_HATCHES,
    REPRESENTATION_ORDER,
    SINGLE_COLUMN,
    STYLE,
    control_styles,
    pipeline_colors,
    placeholder_figure,
    save_figure,
    style,
)
from sclinbench.plotting.styling import _annotate_cell as _annotate_cell
from sclinbench.plotting.styling import _new_figure as _new_figure
from sclinbench.plotting.styling import _upper_limit as _upper_limit
from sclinbench.workflow.contracts import FIGURES

__all__ = [
    "CONTROL_LINESTYLES", "CONTROL_MARKERS", "DOUBLE_COLUMN", "DPI", "EMBEDDING_NOTE", "FIGURES", "HEATMAP_CMAP",
    "METHOD_COLORS", "MODEL_ORDER", "OKABE_ITO", "PUBLISHED_HATCHES", "REPRESENTATION_ORDER", "SINGLE_COLUMN",
    "STYLE", "control_styles", "cross_species_average_bars", "cross_species_heatmap", "disease_levels",
    "make_figures", "normalization_model_heatmap", "novel_type_detection", "novelty_roc", "pipeline_colors",
    "pipeline_scores", "placeholder_figure", "read_benchmarks", "runtime_memory", "save_figure", "style",
]
