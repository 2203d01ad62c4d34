"""Figures of the benchmark, from the tidy metrics table and its summaries.

One style for every figure: the Okabe-Ito colour-blind-safe palette (one colour per method
pipeline, greys for controls, hatched light bars for published numbers), 7-pt text sized for a
journal column (3.5 in single, 7.2 in double), ``viridis`` for heatmaps. Figures are built on
:class:`matplotlib.figure.Figure` directly (the Agg canvas; pyplot's global state is never
touched) and saved as PNG (300 dpi) and PDF atomically by :func:`save_figure`.

Every ``*`` function returns a Figure; when its input has no data for it (e.g. a run without a
cross-species task) it returns a placeholder figure that says what is missing, so the workflow
always writes the same files.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sclinbench import contracts, report
from sclinbench.contracts import FIGURES
from sclinbench.errors import SclinbenchError
from sclinbench.io import atomic_path
from sclinbench.species import common_name, short_label

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


# --------------------------------------------------------------------------- cross-species

def _cross_panels(summary: pd.DataFrame, pipeline: str | None, metric: str, dataset: str | None,
                  task: str | None) -> list[tuple[str, str, str]]:
    m = summary[summary["kind"] == "cross_species"]
    if dataset is not None:
        m = m[m["dataset"] == dataset]
    if task is not None:
        m = m[m["task"] == task]
    panels = []
    best = report.best_of_grid(m, "linear", metric) if len(m) else m
    for (ds, tk), _ in m.groupby(["dataset", "task"], sort=True):
        if pipeline is not None:
            panels.append((ds, tk, pipeline))
            continue
        b = best[(best["dataset"] == ds) & (best["task"] == tk)]
        if len(b):
            panels.append((ds, tk, b["pipeline"].iloc[0]))
    return panels


def cross_species_heatmap(summary: pd.DataFrame, pipeline: str | None = None, metric: str = "macro_f1",
                          dataset: str | None = None, task: str | None = None,
                          species_order: Sequence[str] | None = None) -> Figure:
    """Training x target species heatmap of one pipeline, values annotated.

    The diagonal (the same-species cross-validation) is hatched and outlined so it is not read as
    a cross-species transfer; off-diagonal cells are scored over the labels both species share; the
    right axis gives each row's mean over the *other* species. One panel per cross-species dataset x
    task.

    Parameters
    ----------
    summary
        The score stage's summary (``results/summary.tsv``).
    pipeline
        Pipeline to show; default the best linear pipeline of the grid (optimistic, so labelled).
    metric, dataset, task, species_order
        What to show; ``species_order`` orders rows and columns.
    """
    summary = contracts.check_summary(summary)
    panels = _cross_panels(summary, pipeline, metric, dataset, task)
    if not panels:
        return placeholder_figure("Cross-species transfer",
                                  "No cross-species results in this run: add a task with "
                                  "kind: cross_species on a multi-species dataset.")
    mats = [report.cross_species_matrix(summary, p, metric, dataset=d, task=t, species_order=species_order)
            for d, t, p in panels]
    averages = report.cross_species_average(summary, False, metric)
    n_species = max(max(mat.shape) for mat in mats)
    width = SINGLE_COLUMN if len(panels) == 1 and n_species <= 9 else DOUBLE_COLUMN
    cell = min(0.42, (width / len(panels) - 1.3) / max(n_species, 1))
    height = 1.45 + cell * n_species
    label = report.METRIC_LABELS.get(metric, metric) + (" (shared labels)" if metric == "macro_f1" else "")
    with style():
        fig = _new_figure(width, height)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        cmap = mpl.colormaps[HEATMAP_CMAP]
        norm = mpl.colors.Normalize(0.0, 1.0)
        image = None
        for ax, (d, t, p), mat in zip(axes, panels, mats):
            values = mat.to_numpy(dtype=float)
            image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="equal")
            ax.set_facecolor("#E5E5E5")
            for i, row in enumerate(mat.index):
                for j, col in enumerate(mat.columns):
                    _annotate_cell(ax, j, i, values[i, j], cmap, norm,
                                   fontsize=6.5 if n_species <= 5 else 6,
                                   strip_zero=n_species > 6)
                    if row == col:
                        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////",
                                               edgecolor="white", linewidth=0, alpha=0.55))
                        ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False,
                                               edgecolor="black", linewidth=1.0))
            ax.set_xticks(range(mat.shape[1]), [short_label(c) for c in mat.columns], rotation=45,
                          ha="right", rotation_mode="anchor")
            ax.set_yticks(range(mat.shape[0]), [short_label(r) for r in mat.index])
            ax.set_xlabel("target species")
            ax.set_ylabel("training species")
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            # the score stage's mean over the other (target) species of each training species
            avg = averages[(averages["dataset"] == d) & (averages["task"] == t) & (averages["pipeline"] == p)]
            row_means = avg.set_index("training_species")["mean"].reindex(mat.index).to_numpy(float)
            sec = ax.secondary_yaxis("right")
            sec.set_yticks(range(mat.shape[0]),
                           ["–" if not np.isfinite(v) else f"{v:.2f}" for v in row_means])
            sec.tick_params(length=0)
            sec.spines["right"].set_visible(False)
            sec.set_ylabel("mean over other species", fontsize=6)
            chosen = "" if pipeline is not None else " (best of grid: optimistic)"
            ax.set_title(f"{p}{chosen}\n{d} · {label}", fontsize=7)
        cbar = fig.colorbar(image, ax=list(axes), orientation="horizontal", fraction=0.05,
                            shrink=0.7, aspect=30, pad=0.02)
        cbar.set_label(label)
        cbar.outline.set_linewidth(0.4)
        cbar.ax.tick_params(labelsize=6)
        fig.legend(handles=[Patch(facecolor="#CCCCCC", edgecolor="black", hatch="////",
                                  label="same species: cross-validation within the training species")],
                   loc="outside upper center", fontsize=6, handlelength=1.6)
    return fig


def cross_species_average_bars(summary: pd.DataFrame, reference: pd.DataFrame | None = None,
                               pipelines: Sequence[str] | None = None, metric: str = "macro_f1",
                               include_diagonal: bool = False, dataset: str | None = None,
                               dataset_aliases: Mapping[str, str] | None = None,
                               colors: Mapping[str, str] | None = None, max_pipelines: int = 3,
                               controls: Mapping[str, dict] | None = None) -> Figure:
    """Mean score over target species per training species: our pipelines vs published models.

    Our pipelines are solid bars with one dot per target species; published foundation-model
    numbers (``reference``) are light hatched bars labelled "(published)"; the controls are
    dashed/dotted reference lines over each species. Only species of this run are shown.

    Parameters
    ----------
    summary
        The score stage's summary (``results/summary.tsv``).
    reference
        Output of :func:`sclinbench.report.read_reference` (optional).
    pipelines
        Method pipelines to show; default the ``max_pipelines`` best by overall mean.
    include_diagonal
        Average the same-species score too (labelled in the title). Default off.
    dataset, dataset_aliases
        Which cross-species dataset (default: the first), and our name -> reference name.
    controls
        :func:`control_styles` (default: those of ``summary``).
    """
    summary = contracts.check_summary(summary)
    controls = control_styles(summary) if controls is None else controls
    avg = report.cross_species_average(summary, include_diagonal, metric)
    if avg.empty:
        return placeholder_figure("Cross-species averages",
                                  "No cross-species results in this run: add a task with "
                                  "kind: cross_species on a multi-species dataset.")
    ds = dataset if dataset is not None else sorted(avg["dataset"])[0]
    avg = avg[avg["dataset"] == ds]
    task = sorted(avg["task"])[0]
    avg = avg[avg["task"] == task]
    pairs = report.cross_species_pairs(summary, metric)
    pairs = pairs[(pairs["dataset"] == ds) & (pairs["task"] == task)]
    if not include_diagonal:
        pairs = pairs[~pairs["same_species"]]
    methods = avg[avg["role"] == "method"]
    if pipelines is None:
        ranking = methods.groupby("pipeline")["mean"].mean().sort_values(ascending=False)
        pipelines = list(ranking.index[:max_pipelines])
    pipelines = list(pipelines)
    species = list(pd.unique(avg["training_species"]))
    common = [common_name(s) for s in species]
    pub = pd.DataFrame()
    if reference is not None and len(reference):
        table = report.published_table(reference, avg, dataset_aliases=dataset_aliases)
        pub = table[(table["source"] == report.PUBLISHED) & table["training_species"].isin(common)]
    pub_models = list(pd.unique(pub["model"])) if len(pub) else []
    n_bars = len(pipelines) + len(pub_models)
    width = SINGLE_COLUMN if len(species) * n_bars <= 12 else DOUBLE_COLUMN
    cols = _colors(colors, avg["pipeline"], controls)
    label = report.METRIC_LABELS.get(metric, metric) + (" (shared labels)" if metric == "macro_f1" else "")
    with style():
        fig = _new_figure(width, 2.6)
        ax = fig.add_subplot()
        group_w = 0.8
        bar_w = group_w / max(n_bars, 1)
        x0 = np.arange(len(species))
        pipe_labels = set()
        for k, p in enumerate(pipelines):
            a = avg[avg["pipeline"] == p].set_index("training_species").reindex(species)
            xs = x0 - group_w / 2 + bar_w * (k + 0.5)
            rep = a["representation"].dropna().iloc[0] if a["representation"].notna().any() else ""
            ax.bar(xs, a["mean"].to_numpy(float), width=bar_w * 0.92, color=cols.get(p),
                   label=_pipeline_label(p, rep), zorder=2)
            pipe_labels.add(_pipeline_label(p, rep))
            pp = pairs[pairs["pipeline"] == p]
            for xi, s in zip(xs, species):
                v = pp.loc[pp["training_species"] == s, "mean"].to_numpy(float)
                ax.scatter(np.full(v.size, xi), v, s=5, color="black", zorder=3, linewidths=0)
        for k, model in enumerate(pub_models):
            pm = pub[pub["model"] == model].set_index("training_species").reindex(common)
            xs = x0 - group_w / 2 + bar_w * (len(pipelines) + k + 0.5)
            ax.bar(xs, pm["value"].to_numpy(float), width=bar_w * 0.92, facecolor="#F2F2F2",
                   edgecolor="#555555", linewidth=0.5, hatch=PUBLISHED_HATCHES[k % len(PUBLISHED_HATCHES)],
                   label=f"{model} (published)", zorder=2)
        for ctrl, st in controls.items():
            c = avg[avg["pipeline"] == ctrl].set_index("training_species").reindex(species)
            if c["mean"].notna().any():
                for xi, v in zip(x0, c["mean"].to_numpy(float)):
                    ax.hlines(v, xi - group_w / 2, xi + group_w / 2, colors=st["color"],
                              linestyles=[st["linestyle"]], linewidth=1.0, zorder=4)
                ax.plot([], [], color=st["color"], linestyle=st["linestyle"], label=st["label"])
        ax.plot([], [], "o", color="black", markersize=2, label="one target species")
        many = len(species) > 4
        ax.set_xticks(x0, [short_label(x) for x in species], rotation=25 if many else 0,
                      ha="right" if many else "center", rotation_mode="anchor" if many else "default")
        ax.set_xlim(-0.5, len(species) - 0.5)
        _upper_limit(ax, "y", bottom=0.0)
        ax.set_xlabel("training species")
        ax.set_ylabel(f"{label}\nmean over target species")
        ax.yaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
        ax.set_axisbelow(True)
        diag = "same-species score included" if include_diagonal else "same-species score excluded"
        ax.set_title(f"{ds}: cross-species transfer\n({diag})", fontsize=7)
        handles, labels = ax.get_legend_handles_labels()
        rank = {lab: (0 if lab in pipe_labels else 1 if lab.endswith("(published)") else 2)
                for lab in labels}
        order = sorted(range(len(labels)), key=lambda i: (rank[labels[i]], i))
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0, handlelength=1.8)
        notes = []
        if pub_models:
            ref_name = (dataset_aliases or {}).get(ds, ds)
            notes.append(f"Published ({ref_name}{'' if ref_name == ds else ' data set'}): read off a "
                         "figure (about ±0.01); whether they include the same-species score is not "
                         "stated. Dots: our score on each target species.")
        elif reference is not None:
            notes.append(f"No published numbers for dataset '{ds}'.")
        if (avg["representation"] == "embedding").any():
            notes.append(EMBEDDING_NOTE)
        if notes:
            fig.supxlabel("\n".join(notes), fontsize=6, color="#333333")
    return fig


# --------------------------------------------------------------------------- per-pipeline scores

def _facet_title(dataset: str, task: str, split_kind: str, kind: str, n: int, unit: str,
                 group: str = "") -> str:
    extra = ((" (incl. same-species)" if group == "incl. same-species" else " (excl. same-species)")
             if kind == "cross_species" else "")
    unit = unit.split(" (")[0]
    return f"{dataset} · {task}{extra}\n{split_kind}; n = {n} {unit}{'s' if n != 1 else ''}"


def _facets(summary: pd.DataFrame) -> list[tuple]:
    keys = summary[["dataset", "task", "split_kind", "kind"]].drop_duplicates()
    return [tuple(r) for r in keys.sort_values(["dataset", "task", "split_kind"]).itertuples(index=False)]


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    ncols = min(max_cols, n)
    return int(np.ceil(n / ncols)), ncols


def pipeline_scores(summary: pd.DataFrame, metric: str = "macro_f1",
                    colors: Mapping[str, str] | None = None, controls: Mapping[str, dict] | None = None) -> Figure:
    """Mean score with 95% CI per method pipeline, one panel per dataset x task; controls as lines.

    Parameters
    ----------
    summary
        :func:`sclinbench.report.summary_view` of the score stage's summary.
    metric
        Metric to show (x axis, 0-1).
    colors
        Pipeline -> colour (default :func:`pipeline_colors`).
    controls
        :func:`control_styles` (default: those of ``summary``), drawn as vertical lines.
    """
    controls = control_styles(summary) if controls is None else controls
    s = summary[summary["metric"] == metric]
    if s.empty:
        return placeholder_figure(f"{report.METRIC_LABELS.get(metric, metric)} per pipeline",
                                  f"No '{metric}' scores in this run's metrics table.")
    facets = _facets(s)
    methods = s[s["role"] == "method"]
    order = (methods.groupby("pipeline")["mean"].mean().sort_values().index.tolist())
    reps = methods.drop_duplicates("pipeline").set_index("pipeline")["representation"]
    cols = _colors(colors, s["pipeline"], controls)
    nrows, ncols = _grid(len(facets), 3 if len(facets) > 4 else 2)
    width = SINGLE_COLUMN if len(facets) == 1 else DOUBLE_COLUMN
    height = nrows * (0.75 + 0.17 * max(len(order), 1)) + 0.45
    label = report.METRIC_LABELS.get(metric, metric)
    with style():
        fig = _new_figure(width, height)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        y = {p: i for i, p in enumerate(order)}
        for ax, (d, t, sk, kind) in zip(axes.flat, facets):
            f = s[(s["dataset"] == d) & (s["task"] == t) & (s["split_kind"] == sk)]
            fm = f[f["role"] == "method"]
            for r in fm.itertuples(index=False):
                lo, hi = r.mean - r.ci_low, r.ci_high - r.mean
                ax.errorbar(r.mean, y[r.pipeline], xerr=[[max(lo, 0)], [max(hi, 0)]], fmt="o",
                            color=cols.get(r.pipeline), markersize=3.5, elinewidth=1.0, capsize=1.5,
                            zorder=3)
            for ctrl, st in controls.items():
                c = f[f["pipeline"] == ctrl]
                if len(c):
                    ax.axvline(c["mean"].iloc[0], color=st["color"], linestyle=st["linestyle"],
                               linewidth=0.9, zorder=2)
            n = int(fm["n"].max()) if len(fm) else 0
            unit = fm["unit"].iloc[0] if len(fm) else "fold"
            grp = fm["group"].iloc[0] if len(fm) and "group" in fm.columns else ""
            ax.set_title(_facet_title(d, t, sk, kind, n, unit, grp), fontsize=6.5, fontweight="normal",
                         loc="left")
            ax.xaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
            ax.set_axisbelow(True)
        for ax in axes.flat[len(facets):]:
            ax.set_visible(False)
        axes[0, 0].set_yticks(range(len(order)), [_pipeline_label(p, reps.get(p, "")) for p in order])
        axes[0, 0].set_ylim(-0.6, len(order) - 0.4)
        _upper_limit(axes[0, 0], "x")
        for col in range(ncols):  # tick labels and label under the lowest panel of every column
            shown = [ax for ax in axes[:, col] if ax.get_visible()]
            if shown:
                shown[-1].xaxis.set_tick_params(labelbottom=True)
                shown[-1].set_xlabel(label)
        handles = [Line2D([], [], color=st["color"], linestyle=st["linestyle"], label=st["label"])
                   for st in controls.values()]
        handles.append(Line2D([], [], color="#333333", marker="o", markersize=3, linestyle="-",
                              label="pooled score and 95% bootstrap interval over held-out units"))
        fig.legend(handles=handles, loc="outside lower center", ncols=3)
        if (reps == "embedding").any():
            fig.supxlabel(EMBEDDING_NOTE, fontsize=6)
    return fig


def normalization_model_heatmap(summary: pd.DataFrame, metric: str = "macro_f1",
                                max_gap: float = 0.15) -> Figure:
    """Representation (rows) x model (columns) heatmap per dataset x task, values annotated.

    Each cell is the best mean over the method pipelines with that representation and model
    (controls are left out); "–" cells were not run. The number is the score itself; the colour is
    its distance to the best cell of the same panel (one shared scale, clipped at ``-max_gap``),
    so panels of easy and hard tasks read the same way.
    """
    s = summary[(summary["metric"] == metric) & (summary["role"] == "method")]
    if s.empty:
        return placeholder_figure("Normalization x model",
                                  f"No '{metric}' scores of method pipelines in this run.")
    facets = _facets(s)
    reps = [r for r in REPRESENTATION_ORDER if r in set(s["representation"])] + \
        sorted(set(s["representation"]) - set(REPRESENTATION_ORDER))
    models = [m for m in MODEL_ORDER if m in set(s["model"])] + sorted(set(s["model"]) - set(MODEL_ORDER))
    nrows, ncols = _grid(len(facets), 3)
    width = SINGLE_COLUMN if len(facets) == 1 else DOUBLE_COLUMN
    height = nrows * (0.75 + 0.24 * len(reps)) + 0.75
    label = report.METRIC_LABELS.get(metric, metric)
    cmap = mpl.colormaps[HEATMAP_CMAP]
    norm = mpl.colors.Normalize(-max_gap, 0.0, clip=True)
    with style():
        fig = _new_figure(width, height)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        image = None
        for idx, (ax, (d, t, sk, kind)) in enumerate(zip(axes.flat, facets)):
            f = s[(s["dataset"] == d) & (s["task"] == t) & (s["split_kind"] == sk)]
            mat = (f.groupby(["representation", "model"])["mean"].max().unstack()
                   .reindex(index=reps, columns=models))
            v = mat.to_numpy(dtype=float)
            gap = v - np.nanmax(v) if np.isfinite(v).any() else v
            image = ax.imshow(np.ma.masked_invalid(gap), cmap=cmap, norm=norm, aspect="auto")
            ax.set_facecolor("#EDEDED")
            for i in range(len(reps)):
                for j in range(len(models)):
                    if np.isfinite(v[i, j]):
                        color = "black" if _luminance(cmap(norm(gap[i, j]))) > 0.45 else "white"
                        ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=6, color=color)
                    else:
                        ax.text(j, i, "–", ha="center", va="center", fontsize=6, color="#777777")
            ax.set_xticks(range(len(models)), models)
            ax.set_yticks(range(len(reps)), reps if idx % ncols == 0 else [])
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            extra = " (excl. same-species)" if kind == "cross_species" else ""
            ax.set_title(f"{d} · {t}{extra}", fontsize=6.5, fontweight="normal")
        for ax in axes.flat[len(facets):]:
            ax.set_visible(False)
        cbar = fig.colorbar(image, ax=axes.ravel().tolist(), orientation="horizontal", location="bottom",
                            fraction=0.04, shrink=0.45, aspect=35, pad=0.02, extend="min")
        cbar.set_label(f"{label}: difference from the best cell of the panel (numbers: {label})")
        cbar.outline.set_linewidth(0.4)
        cbar.ax.tick_params(labelsize=6)
        fig.suptitle(f"{label} by representation (rows) and model (columns); best pipeline per cell, "
                     "– = not run", fontsize=7)
    return fig


def _n_units(rows: pd.DataFrame) -> str:
    """``n = 8 donors``: the held-out units of a summary's rows (their largest count)."""
    n = int(rows["n"].max())
    unit = str(rows["unit"].iloc[0]) if "unit" in rows.columns and len(rows) else ""
    return f"n = {n} {unit}{'s' if n != 1 and unit else ''}".rstrip()


def disease_levels(summary: pd.DataFrame, metric: str = "macro_f1",
                   colors: Mapping[str, str] | None = None, controls: Mapping[str, dict] | None = None) -> Figure:
    """Disease-state prediction at cell level (donors held out) and donor level (pseudobulk).

    One panel per dataset; x groups are the split kinds, pipelines side by side with 95% CIs,
    controls as short dashed/dotted lines over each group.
    """
    controls = control_styles(summary) if controls is None else controls
    s = summary[(summary["metric"] == metric) & (summary["kind"] == "disease")]
    if s.empty:
        return placeholder_figure("Disease state",
                                  "No disease task in this run: add a task with kind: disease "
                                  "(split: donor and/or donor_pseudobulk) on a dataset with a "
                                  "condition column.")
    datasets = sorted(pd.unique(s["dataset"]))
    known = {"donor": "cells\n(donors held out)", "donor_pseudobulk": "donors\n(pseudobulk)"}
    kinds = [k for k in known if k in set(s["split_kind"])] + sorted(set(s["split_kind"]) - set(known))
    methods = sorted(pd.unique(s.loc[s["role"] == "method", "pipeline"]),
                     key=lambda p: -s.loc[s["pipeline"] == p, "mean"].mean())
    cols = _colors(colors, s["pipeline"], controls)
    width = SINGLE_COLUMN if len(datasets) == 1 else DOUBLE_COLUMN
    label = report.METRIC_LABELS.get(metric, metric)
    with style():
        fig = _new_figure(width, 3.2)
        axes = fig.subplots(1, len(datasets), squeeze=False, sharey=True)[0]
        group_w = 0.7
        step = group_w / max(len(methods), 1)
        for ax, d in zip(axes, datasets):
            f = s[s["dataset"] == d]
            for gi, sk in enumerate(kinds):
                g = f[f["split_kind"] == sk]
                for k, p in enumerate(methods):
                    r = g[g["pipeline"] == p]
                    if r.empty:
                        continue
                    r = r.iloc[0]
                    x = gi - group_w / 2 + step * (k + 0.5)
                    ax.errorbar(x, r["mean"], yerr=[[max(r["mean"] - r["ci_low"], 0)],
                                                    [max(r["ci_high"] - r["mean"], 0)]],
                                fmt="o", color=cols.get(p), markersize=3.5, capsize=1.5,
                                elinewidth=1.0, zorder=3)
                for ctrl, st in controls.items():
                    c = g[g["pipeline"] == ctrl]
                    if len(c):
                        ax.hlines(c["mean"].iloc[0], gi - group_w / 2 - 0.05, gi + group_w / 2 + 0.05,
                                  colors=st["color"], linestyles=[st["linestyle"]], linewidth=1.0)
            ns = [f"{known.get(sk, sk)}\n{_n_units(f[f['split_kind'] == sk])}"
                  if (f["split_kind"] == sk).any() else known.get(sk, sk) for sk in kinds]
            ax.set_xticks(range(len(kinds)), ns)
            ax.set_xlim(-0.6, len(kinds) - 0.4)
            _upper_limit(ax, "y")
            ax.yaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
            ax.set_axisbelow(True)
            ax.set_title(f"{d}: disease state", fontsize=7)
        axes[0].set_ylabel(label)
        handles = [Line2D([], [], color=cols.get(p), marker="o", linestyle="", markersize=3.5,
                          label=_pipeline_label(p, s.loc[s["pipeline"] == p, "representation"].iloc[0]))
                   for p in methods]
        handles += [Line2D([], [], color=st["color"], linestyle=st["linestyle"], label=st["label"])
                    for st in controls.values()]
        handles.append(Line2D([], [], color="#333333", marker="o", markersize=3, linestyle="-",
                              label="pooled score, 95% bootstrap\ninterval over held-out donors"))
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
    return fig


# --------------------------------------------------------------------------- novel type

def novelty_roc(predictions: pd.DataFrame) -> pd.DataFrame:
    """ROC curve points of novelty detection per pipeline, pooled over folds and held-out types.

    The novelty score is the negated confidence (``-score``): a cell the model is unsure about is
    called novel. Cells without a score count as most novel (as in :mod:`sclinbench.metrics`).
    The reported novelty AUROC is the score stage's (``results/summary.tsv``), not this curve's area.

    Returns
    -------
    Columns ``pipeline, fpr, tpr`` (one row per curve point).
    """
    from sklearn.metrics import roc_curve

    missing = [c for c in ("pipeline", "score", "novel") if c not in predictions.columns]
    if missing:
        raise SclinbenchError(f"predictions: missing column(s) {', '.join(missing)}; novel-type "
                              "figures need the predictions of a novel_type task")
    rows = []
    for p, df in predictions.groupby("pipeline", sort=True):
        novel = df["novel"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
        if novel.all() or not novel.any():
            continue
        conf = pd.to_numeric(df["score"], errors="coerce").to_numpy(float)
        ok = np.isfinite(conf)
        # unscored cells are the most novel: one step above the highest finite novelty score
        top = -conf[ok].min() + 1.0 if ok.any() else 1.0
        novelty = np.where(ok, -conf, top)
        fpr, tpr, _ = roc_curve(novel, novelty)
        rows.append(pd.DataFrame({"pipeline": p, "fpr": fpr, "tpr": tpr}))
    if not rows:
        return pd.DataFrame(columns=["pipeline", "fpr", "tpr"])
    return pd.concat(rows, ignore_index=True)


def _novel_tasks(predictions: Mapping, metrics: pd.DataFrame | None, summary: pd.DataFrame | None) -> list:
    """(dataset, task) of every novel-type task the inputs have, in name order."""
    keys = set(k for k in predictions if k is not None)
    for table in (summary, metrics):
        if table is not None and len(table):
            rows = table[table["kind"] == "novel_type"]
            keys |= set(zip(rows["dataset"], rows["task"]))
    return sorted(keys)


def novel_type_detection(predictions: Mapping[tuple[str, str], pd.DataFrame] | pd.DataFrame | None = None,
                         metrics: pd.DataFrame | None = None, summary: pd.DataFrame | None = None,
                         colors: Mapping[str, str] | None = None,
                         controls: Mapping[str, dict] | None = None) -> Figure:
    """Novel cell-type detection, one row per dataset x novel-type task.

    Left: ROC curves of novelty detection, pooled over folds and held-out types, from the per-cell
    predictions (the legend gives each pipeline's novelty AUROC as the tables report it:
    ``results/summary.tsv``, the mean over held-out types). Right: novelty AUROC per held-out type
    (``results/metrics.tsv``: a novel-type fold holds out one type), every repeat of a shuffled
    control drawn as its own cross.

    Parameters
    ----------
    predictions
        ``(dataset, task) -> `` per-cell predictions of that novel-type task (columns ``pipeline,
        score, novel``), e.g. :func:`sclinbench.contracts.read_predictions` of ``results/predictions/dataset~D/task~T/*.parquet``; a single
        DataFrame is the predictions of the only novel-type task. Optional.
    metrics, summary
        The run's per-fold scores and summary (optional; without them the panels say what is missing).
    colors, controls
        Pipeline -> colour; :func:`control_styles` (default: those of ``summary`` or ``metrics``).
    """
    if isinstance(predictions, pd.DataFrame):
        predictions = {None: predictions}
    predictions = dict(predictions or {})
    if metrics is not None and len(metrics):
        metrics = contracts.check_metrics(metrics)
    if summary is not None and len(summary):
        summary = contracts.check_summary(summary)
    tasks = _novel_tasks(predictions, metrics, summary)
    if None in predictions and len(tasks) <= 1:  # one unnamed predictions table: that task's
        predictions[tasks[0] if tasks else (None, None)] = predictions.pop(None)
        tasks = tasks or [(None, None)]
    predictions.pop(None, None)
    if not tasks:
        return placeholder_figure("Novel cell-type detection",
                                  "No novel-type results in this run: add a task with kind: "
                                  "novel_type (one cell type held out of training at a time).")
    if controls is None:
        controls = control_styles(summary if summary is not None and len(summary) else metrics)
    names = set()
    for df in predictions.values():
        names |= set(pd.unique(df["pipeline"]))
    for table in (metrics, summary):
        if table is not None and len(table):
            names |= set(table.loc[table["kind"] == "novel_type", "pipeline"])
    cols = _colors(colors, names, controls)
    with style():
        fig = _new_figure(DOUBLE_COLUMN, 0.5 + 3.6 * len(tasks))
        axes = fig.subplots(len(tasks), 2, width_ratios=[1, 1.7], squeeze=False)
        for row, ((d, t), (ax_roc, ax_auc)) in enumerate(zip(tasks, axes)):
            _novel_roc_panel(ax_roc, predictions.get((d, t)), summary, d, t, cols, controls)
            _novel_type_panel(ax_auc, metrics, d, t, cols, controls, legend=row == 0)
            if d is not None:
                ax_roc.set_title(f"{d} · {t}\nROC, pooled over folds and held-out types", fontsize=7)
    return fig


def _novel_roc_panel(ax, predictions, summary, dataset, task, cols, controls) -> None:
    roc = novelty_roc(predictions) if predictions is not None and len(predictions) else None
    if roc is not None and len(roc):
        table = {}
        if summary is not None and len(summary):
            s = summary[(summary["dataset"] == dataset) & (summary["task"] == task) & (summary["group"] == "")
                        & (summary["metric"] == "novelty_auroc")]
            table = dict(zip(s["pipeline"], s["value"]))
        order = sorted(pd.unique(roc["pipeline"]), key=lambda p: (p in controls, -table.get(p, -1.0), p))
        for p in order:
            c = roc[roc["pipeline"] == p]
            value = table.get(p)
            label = p if value is None or not np.isfinite(value) else f"{p}  {value:.2f}"
            ax.plot(c["fpr"], c["tpr"], color=cols.get(p), linestyle=controls.get(p, {}).get("linestyle", "-"),
                    linewidth=1.1, label=label)
        ax.plot([0, 1], [0, 1], color="#BBBBBB", linewidth=0.6, linestyle="-", zorder=0)
        # below the axes: inside, any corner hides a curve (controls run along the diagonal)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), fontsize=5.5, handlelength=2.0,
                  borderaxespad=0, labelspacing=0.25, ncols=1, frameon=False, title_fontsize=5.5,
                  title="novelty AUROC (tables: mean over held-out types)" if table else None)
    else:
        ax.text(0.5, 0.5, "per-cell predictions not supplied\n(ROC needs the predictions files)",
                ha="center", va="center", fontsize=6.5, color="#555555", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_box_aspect(1)
    ax.set_xlabel("false positive rate (known cells called novel)", fontsize=6)
    ax.set_ylabel("true positive rate\n(novel cells found)")
    ax.set_title("ROC, pooled over folds\nand held-out types", fontsize=7)


def _novel_type_panel(ax, metrics, dataset, task, cols, controls, legend: bool) -> None:
    m = None
    if metrics is not None and len(metrics):
        m = metrics[(metrics["kind"] == "novel_type") & (metrics["metric"] == "novelty_auroc")]
        if dataset is not None:
            m = m[(m["dataset"] == dataset) & (m["task"] == task)]
        elif m["dataset"].nunique() > 1:  # an unnamed task: the per-type panel of the first
            first = m.iloc[0]
            m = m[(m["dataset"] == first["dataset"]) & (m["task"] == first["task"])]
    if m is None or m.empty:
        ax.text(0.5, 0.5, "no novelty_auroc in the metrics table", ha="center", va="center",
                fontsize=6.5, color="#555555", transform=ax.transAxes)
    else:
        cats = sorted(pd.unique(m["group"]))
        pipes = sorted(pd.unique(m["pipeline"]), key=lambda p: (p in controls, p))
        step = 0.7 / max(len(pipes), 1)
        x_of = {c: i for i, c in enumerate(cats)}
        for k, p in enumerate(pipes):
            q = m[m["pipeline"] == p]
            xs = q["group"].map(x_of).to_numpy(float) - 0.35 + step * (k + 0.5)
            is_control = p in controls
            label = p + (" (each repeat)" if is_control and q["repeat"].nunique() > 1 else "")
            if is_control:
                marker = controls[p].get("marker", "x")
                hollow = {"facecolors": "none", "edgecolors": cols.get(p)} if marker in ("s", "^") \
                    else {"color": cols.get(p)}  # open shapes; line markers (x, +) take the colour
                ax.scatter(xs, q["value"], marker=marker, s=12, zorder=3, label=label, linewidths=0.8, **hollow)
            else:
                ax.scatter(xs, q["value"], color=cols.get(p), marker="o", s=14, zorder=3, label=label,
                           linewidths=0)
        ax.axhline(0.5, color="#999999", linewidth=0.6, linestyle="-", zorder=0)
        ax.text(len(cats) - 0.45, 0.5, "chance", fontsize=6, color="#777777", ha="left", va="center",
                clip_on=False)
        ax.set_xticks(range(len(cats)), cats, rotation=35 if len(cats) > 4 else 0,
                      ha="right" if len(cats) > 4 else "center", rotation_mode="anchor", fontsize=6)
        ax.set_xlim(-0.5, len(cats) - 0.5)
        _upper_limit(ax, "y")
        if legend:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=6)
        ax.yaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
        ax.set_axisbelow(True)
    ax.set_ylabel("novelty AUROC\n(one fold per held-out type)")
    ax.set_title("Per held-out type (absent from training)", fontsize=7)


# --------------------------------------------------------------------------- runtime / memory

def read_benchmarks(root: str | os.PathLike | Iterable[str | os.PathLike],
                    folder: str | os.PathLike = "benchmarks") -> pd.DataFrame:
    """Read Snakemake ``benchmark:`` files ``benchmarks/<rule>/<...>.tsv`` (or ``benchmarks/<rule>.tsv``).

    Parameters
    ----------
    root
        The ``benchmarks`` folder (every file in it), or the files themselves (e.g. the benchmark
        records a rule declares as input).
    folder
        For a list of files: the benchmarks folder they are under (the rule is the first part of
        the path below it).

    Returns
    -------
    Columns ``rule, job, s, max_rss`` (+ the other benchmark columns); ``-``/``NA`` become NaN.
    """
    if isinstance(root, (str, os.PathLike)):
        folder = Path(root)
        files = sorted(folder.rglob("*.tsv")) if folder.exists() else []
    else:
        folder = Path(folder)
        files = sorted(Path(f) for f in root)
    rel = [Path(os.path.relpath(f, folder)) for f in files]
    rules = [r.parts[0] if len(r.parts) > 1 else r.stem for r in rel]
    jobs = [str(Path(*r.parts[1:]).with_suffix("")) if len(r.parts) > 1 else r.stem for r in rel]
    frames = []
    for f, rule, job in zip(files, rules, jobs):
        try:
            df = pd.read_csv(f, sep="\t", na_values=["-", "NA", ""])
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
            raise SclinbenchError(f"{f}: not a Snakemake benchmark table ({exc}); delete it and "
                                  "rerun the rule") from None
        if "s" not in df.columns:
            raise SclinbenchError(f"{f}: no column 's'; expected a Snakemake benchmark file")
        frames.append(df.assign(rule=rule, job=job))
    if not frames:
        return pd.DataFrame(columns=["rule", "job", "s", "max_rss"])
    out = pd.concat(frames, ignore_index=True)
    for col in ("s", "max_rss", "max_vms", "max_uss", "max_pss", "cpu_time", "mean_load"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    front = ["rule", "job", "s", "max_rss"]
    return out[front + [c for c in out.columns if c not in front]]


def runtime_memory(benchmarks: pd.DataFrame) -> Figure:
    """Wall time and peak memory (max RSS) per rule: one dot per job, a tick at the median.

    Both axes are logarithmic when the values span more than a factor 50, so a median is a mark,
    never a bar (a bar's length on a log axis means nothing).

    Parameters
    ----------
    benchmarks
        Output of :func:`read_benchmarks`.
    """
    if benchmarks is None or benchmarks.empty or benchmarks["s"].notna().sum() == 0:
        return placeholder_figure("Runtime and memory",
                                  "No benchmark files: the workflow's rules write "
                                  "benchmarks/<rule>/<job>.tsv when run by Snakemake.")
    b = benchmarks.copy()
    b["mem_mb"] = b["max_rss"] if "max_rss" in b.columns else np.nan
    order = b.groupby("rule")["s"].sum().sort_values().index.tolist()
    counts = b.groupby("rule").size()
    height = 0.9 + 0.2 * len(order)
    with style():
        fig = _new_figure(DOUBLE_COLUMN, max(height, 1.8))
        ax_t, ax_m = fig.subplots(1, 2, sharey=True)
        rng = np.random.default_rng(0)
        for i, rule in enumerate(order):
            r = b[b["rule"] == rule]
            jitter = rng.uniform(-0.18, 0.18, len(r))
            for ax, col in ((ax_t, "s"), (ax_m, "mem_mb")):
                v = r[col].to_numpy(float)
                ok = np.isfinite(v) & (v > 0)
                if not ok.any():
                    continue
                ax.scatter(v[ok], i + jitter[ok], s=6, color=OKABE_ITO["sky_blue"], zorder=2, linewidths=0)
                ax.scatter([np.median(v[ok])], [i], marker="|", s=160, linewidths=1.6, color=OKABE_ITO["blue"],
                           zorder=3)
        ax_t.set_yticks(range(len(order)), [f"{r} (n={counts[r]})" for r in order])
        ax_t.set_ylim(-0.6, len(order) - 0.4)
        for ax, col, what in ((ax_t, "s", "wall-clock time per job (s"), (ax_m, "mem_mb", "peak memory per job (max RSS, MB")):
            v = b[col].to_numpy(float)
            v = v[np.isfinite(v) & (v > 0)]
            log = v.size and v.max() / v.min() > 50
            if log:
                ax.set_xscale("log")
                # plain numbers at 1-2-5 steps instead of crowded "3x10^0" minor labels
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                ax.set_xlim(left=0)
            ax.set_xlabel(what + (", log scale)" if log else ")"))
            ax.xaxis.grid(True, linewidth=0.3, color="#DDDDDD", which="major", zorder=0)
            ax.set_axisbelow(True)
        if not b["mem_mb"].notna().any():
            ax_m.text(0.5, 0.5, "max_rss not recorded", transform=ax_m.transAxes, ha="center")
        ax_t.set_title("Runtime per rule (dots = jobs, | = median)", fontsize=7)
        ax_m.set_title("Memory per rule", fontsize=7)
    return fig


# --------------------------------------------------------------------------- all figures

def make_figures(summary: pd.DataFrame, outdir: str | os.PathLike, metrics: pd.DataFrame | None = None,
                 reference: pd.DataFrame | None = None,
                 predictions: Mapping[tuple[str, str], pd.DataFrame] | pd.DataFrame | None = None,
                 benchmarks: pd.DataFrame | None = None, metric: str = "macro_f1",
                 dataset_aliases: Mapping[str, str] | None = None) -> dict[str, tuple[Path, Path]]:
    """Write every figure of :data:`~sclinbench.contracts.FIGURES` to ``outdir`` as PNG + PDF
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
