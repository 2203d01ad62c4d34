"""One style for every figure: the Okabe-Ito colour-blind-safe palette (one colour per method
pipeline, greys for controls, hatched light bars for published numbers), 7-pt text sized for a
journal column (3.5 in single, 7.2 in double), ``viridis`` for heatmaps; the blank figure, the
placeholder figure and :func:`save_figure` (PNG at 300 dpi and PDF, atomically).
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sclinbench.workflow.io import atomic_path

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}

#: Order in which method pipelines receive colours (yellow last: low contrast on white).
METHOD_COLORS = ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue", "yellow")

#: (colour, line style) of the controls -- the pipelines with ``role: control`` -- given out in name order.
CONTROL_LINESTYLES = (("#4D4D4D", (0, (4, 2))), ("#000000", (0, (1, 1.5))), ("#7F7F7F", (0, (4, 1.5, 1, 1.5))),
                      ("#999999", (0, (6, 2))))

#: Markers of the controls where single values are drawn (novel-type panel), in the same order.
CONTROL_MARKERS = ("s", "x", "+", "^")

PUBLISHED_HATCHES = ("////", "\\\\\\\\", "xxxx", "....", "++++", "oo")

SINGLE_COLUMN = 3.5   # inches

DOUBLE_COLUMN = 7.2   # inches

DPI = 300

HEATMAP_CMAP = "viridis"

REPRESENTATION_ORDER = ("counts", "log1p", "sqrt", "pearson", "rankz", "embedding")

MODEL_ORDER = ("centroid", "logreg", "linear_svm", "ridge", "lda", "knn")

EMBEDDING_NOTE = "* foundation-model embedding supplied by the user; linear model fitted here (computed here)"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 7,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "legend.title_fontsize": 6.5,
    "legend.frameon": False,
    "figure.titlesize": 8,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 4,
    "hatch.linewidth": 0.6,
    "pdf.fonttype": 42,   # editable text in the PDF
    "svg.fonttype": "none",
    "image.cmap": HEATMAP_CMAP,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply the package style (``rcParams``) inside a ``with`` block."""
    with mpl.rc_context(STYLE):
        yield


def control_styles(table: pd.DataFrame | None) -> dict[str, dict]:
    """``name -> {color, linestyle, marker, label}`` of every control of a summary or metrics table.

    A control is a pipeline whose ``role`` is ``control`` (never recognised by its name); the
    styles of :data:`CONTROL_LINESTYLES` and :data:`CONTROL_MARKERS` go to the controls in name order.
    """
    if table is None or not len(table) or "role" not in table.columns:
        return {}
    names = sorted(pd.unique(table.loc[table["role"] == "control", "pipeline"]))
    out = {}
    for i, name in enumerate(names):
        color, linestyle = CONTROL_LINESTYLES[i % len(CONTROL_LINESTYLES)]
        out[name] = {"color": color, "linestyle": linestyle, "marker": CONTROL_MARKERS[i % len(CONTROL_MARKERS)],
                     "label": name if "control" in name else f"{name} (control)"}
    return out


def pipeline_colors(pipelines: Iterable[str], controls: Iterable[str] = ()) -> dict[str, str]:
    """One fixed colour per pipeline: Okabe-Ito in order for methods, greys for the ``controls``.

    Pass the full list of pipelines of a run (e.g. from ``summary.pipeline``) and its controls
    (:func:`control_styles`) so that every figure uses the same colour for the same pipeline.
    """
    controls = list(controls)
    styles = {name: CONTROL_LINESTYLES[i % len(CONTROL_LINESTYLES)][0] for i, name in enumerate(sorted(controls))}
    colors, i = {}, 0
    for name in dict.fromkeys(pipelines):
        if name in styles:
            colors[name] = styles[name]
        else:
            colors[name] = OKABE_ITO[METHOD_COLORS[i % len(METHOD_COLORS)]]
            i += 1
    return colors


def _colors(colors: Mapping[str, str] | None, names: Iterable[str], controls: Iterable[str] = ()) -> dict[str, str]:
    out = pipeline_colors(sorted(set(names)), controls)
    if colors:
        out.update({k: v for k, v in colors.items()})
    return out


def _upper_limit(ax, axis: str = "x", bottom: float = -0.025) -> None:
    """A 0-1 score axis with a little room at both ends, so a point or line at 0 or 1 is drawn
    whole and never hides behind the frame (ticks stay 0-1); bars start at ``bottom=0``."""
    ticks = np.linspace(0.0, 1.0, 6)
    if axis == "x":
        ax.set_xlim(bottom, 1.04)
        ax.set_xticks(ticks)
    else:
        ax.set_ylim(bottom, 1.04)
        ax.set_yticks(ticks)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.03, h_pad=0.03, wspace=0.04, hspace=0.06)
    return fig


def placeholder_figure(title: str, message: str, width: float = SINGLE_COLUMN,
                       height: float = 1.6) -> Figure:
    """A figure that only says what is missing (keeps the workflow's outputs static)."""
    with style():
        fig = Figure(figsize=(width, height), dpi=100)
        fig.patches.append(Rectangle((0.02, 0.04), 0.96, 0.92, transform=fig.transFigure, fill=False,
                                     edgecolor="#999999", linestyle=(0, (3, 2)), linewidth=0.8))
        fig.text(0.5, 0.70, title, ha="center", va="center", fontsize=8, fontweight="bold")
        chars = max(int(width * 15), 20)
        fig.text(0.5, 0.40, textwrap.fill(message, chars), ha="center", va="center", fontsize=6.5,
                 color="#333333", linespacing=1.4)
    fig.sclinbench_placeholder = True
    return fig


def save_figure(fig: Figure, png_path: str | os.PathLike, pdf_path: str | os.PathLike | None = None,
                dpi: int = DPI) -> tuple[Path, Path | None]:
    """Save ``fig`` as PNG (``dpi``) and optionally PDF, each written atomically.

    The PNG is exactly ``figsize * dpi`` pixels (no tight bounding box: layout is constrained).
    """
    png_path = Path(png_path)
    with style():
        with atomic_path(png_path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
        if pdf_path is not None:
            pdf_path = Path(pdf_path)
            with atomic_path(pdf_path) as tmp:
                fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None})
    return png_path, (Path(pdf_path) if pdf_path is not None else None)


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _annotate_cell(ax, x, y, value, cmap, norm, fontsize=6.5, strip_zero: bool = False) -> None:
    if value is None or not np.isfinite(value):
        ax.text(x, y, "–", ha="center", va="center", fontsize=fontsize, color="#666666")
        return
    color = "black" if _luminance(cmap(norm(value))) > 0.45 else "white"
    text = f"{value:.2f}"
    if strip_zero and text.startswith("0."):
        text = text[1:]  # ".78": dense heatmaps
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=color)


def _pipeline_label(name: str, representation: str) -> str:
    return f"{name} *" if representation == "embedding" else name
