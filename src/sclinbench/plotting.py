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
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

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
CONTROL_STYLES = {
    "control_majority": {"color": "#4D4D4D", "linestyle": (0, (4, 2)), "label": "majority-class control"},
    "control_shuffled": {"color": "#000000", "linestyle": (0, (1, 1.5)), "label": "shuffled-label control"},
}
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


def pipeline_colors(pipelines: Iterable[str]) -> dict[str, str]:
    """One fixed colour per pipeline: Okabe-Ito in order for methods, greys for controls.

    Pass the full list of pipelines of a run (e.g. from ``metrics.pipeline``) so that every figure
    uses the same colour for the same pipeline.
    """
    colors, i = {}, 0
    for name in dict.fromkeys(pipelines):
        if name in CONTROL_STYLES:
            colors[name] = CONTROL_STYLES[name]["color"]
        elif name.startswith("control"):
            colors[name] = "#7F7F7F"
        else:
            colors[name] = OKABE_ITO[METHOD_COLORS[i % len(METHOD_COLORS)]]
            i += 1
    return colors


def _colors(colors: Mapping[str, str] | None, names: Iterable[str]) -> dict[str, str]:
    names = list(names)
    out = pipeline_colors(sorted(names))
    if colors:
        out.update({k: v for k, v in colors.items()})
    return out


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
            off = mat.to_numpy(dtype=float).copy()
            for i, row in enumerate(mat.index):
                if row in mat.columns:
                    off[i, list(mat.columns).index(row)] = np.nan
            with np.errstate(all="ignore"):
                row_means = np.nanmean(off, axis=1)
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
                               colors: Mapping[str, str] | None = None, max_pipelines: int = 3) -> Figure:
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
    """
    summary = contracts.check_summary(summary)
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
    cols = _colors(colors, avg["pipeline"])
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
        for ctrl, st in CONTROL_STYLES.items():
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
        ax.set_ylim(0, 1)
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
                    colors: Mapping[str, str] | None = None) -> Figure:
    """Mean score with 95% CI per method pipeline, one panel per dataset x task; controls as lines.

    Parameters
    ----------
    summary
        :func:`sclinbench.report.summary_view` of the score stage's summary.
    metric
        Metric to show (x axis, 0-1).
    colors
        Pipeline -> colour (default :func:`pipeline_colors`).
    """
    s = summary[summary["metric"] == metric]
    if s.empty:
        return placeholder_figure(f"{report.METRIC_LABELS.get(metric, metric)} per pipeline",
                                  f"No '{metric}' scores in this run's metrics table.")
    facets = _facets(s)
    methods = s[s["role"] == "method"]
    order = (methods.groupby("pipeline")["mean"].mean().sort_values().index.tolist())
    reps = methods.drop_duplicates("pipeline").set_index("pipeline")["representation"]
    cols = _colors(colors, s["pipeline"])
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
            for ctrl, st in CONTROL_STYLES.items():
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
        axes[0, 0].set_xlim(0, 1.0)
        for ax in axes[-1, :]:
            ax.set_xlabel(label)
        handles = [Line2D([], [], color=st["color"], linestyle=st["linestyle"], label=st["label"])
                   for st in CONTROL_STYLES.values()]
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


def disease_levels(summary: pd.DataFrame, metric: str = "macro_f1",
                   colors: Mapping[str, str] | None = None) -> Figure:
    """Disease-state prediction at cell level (donors held out) and donor level (pseudobulk).

    One panel per dataset; x groups are the split kinds, pipelines side by side with 95% CIs,
    controls as short dashed/dotted lines over each group.
    """
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
    cols = _colors(colors, s["pipeline"])
    width = SINGLE_COLUMN if len(datasets) == 1 else DOUBLE_COLUMN
    label = report.METRIC_LABELS.get(metric, metric)
    with style():
        fig = _new_figure(width, 2.5)
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
                for ctrl, st in CONTROL_STYLES.items():
                    c = g[g["pipeline"] == ctrl]
                    if len(c):
                        ax.hlines(c["mean"].iloc[0], gi - group_w / 2 - 0.05, gi + group_w / 2 + 0.05,
                                  colors=st["color"], linestyles=[st["linestyle"]], linewidth=1.0)
            ns = [f"{known.get(sk, sk)}\nn = {int(f.loc[f['split_kind'] == sk, 'n'].max())}"
                  if (f["split_kind"] == sk).any() else known.get(sk, sk) for sk in kinds]
            ax.set_xticks(range(len(kinds)), ns)
            ax.set_xlim(-0.6, len(kinds) - 0.4)
            ax.set_ylim(0, 1)
            ax.yaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
            ax.set_axisbelow(True)
            ax.set_title(f"{d}: disease state", fontsize=7)
        axes[0].set_ylabel(label)
        handles = [Line2D([], [], color=cols.get(p), marker="o", linestyle="", markersize=3.5,
                          label=_pipeline_label(p, s.loc[s["pipeline"] == p, "representation"].iloc[0]))
                   for p in methods]
        handles += [Line2D([], [], color=st["color"], linestyle=st["linestyle"], label=st["label"])
                    for st in CONTROL_STYLES.values()]
        fig.legend(handles=handles, loc="outside right upper")
    return fig


# --------------------------------------------------------------------------- novel type

def novelty_roc(predictions: pd.DataFrame) -> pd.DataFrame:
    """ROC curve of novelty detection per pipeline, pooled over folds and held-out types.

    The novelty score is the negated confidence (``-score``): a cell the model is unsure about is
    called novel. Cells without a score count as most novel (as in :mod:`sclinbench.metrics`).

    Returns
    -------
    Columns ``pipeline, fpr, tpr, auroc`` (one row per curve point).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

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
        auc = roc_auc_score(novel, novelty)
        rows.append(pd.DataFrame({"pipeline": p, "fpr": fpr, "tpr": tpr, "auroc": auc}))
    if not rows:
        return pd.DataFrame(columns=["pipeline", "fpr", "tpr", "auroc"])
    return pd.concat(rows, ignore_index=True)


def novel_type_detection(predictions: pd.DataFrame | None = None, metrics: pd.DataFrame | None = None,
                         colors: Mapping[str, str] | None = None, title: str | None = None,
                         dataset: str | None = None) -> Figure:
    """Novel cell-type detection: ROC curves (left) and novelty AUROC per held-out type (right).

    Parameters
    ----------
    predictions
        Per-cell predictions of one novel-type task (columns ``cell_id, fold, group, pipeline,
        y_true, y_pred, score, novel``), e.g. the concatenated
        ``results/predictions/dataset~D/task~T/*.tsv.gz``. Optional.
    metrics
        Tidy metrics; its ``novel_type`` rows with ``novelty_auroc`` feed the right panel. Optional.
    colors
        Pipeline -> colour.
    title
        Figure title (e.g. the dataset).
    dataset
        Show the per-type panel of this dataset only (the one the predictions come from), so both
        panels describe the same data.
    """
    roc = novelty_roc(predictions) if predictions is not None and len(predictions) else None
    per_type = None
    if metrics is not None and len(metrics):
        m = contracts.check_metrics(metrics)
        m = m[(m["kind"] == "novel_type") & (m["metric"] == "novelty_auroc")]
        if dataset is not None:
            m = m[m["dataset"] == dataset]
        if len(m):
            per_type = (m.groupby(["dataset", "group", "pipeline", "role"], sort=True)["value"]
                        .mean().reset_index())
    if (roc is None or roc.empty) and per_type is None:
        return placeholder_figure("Novel cell-type detection",
                                  "No novel-type results in this run: add a task with kind: "
                                  "novel_type (one cell type held out of training at a time).")
    names = list(roc["pipeline"]) if roc is not None else []
    names += list(per_type["pipeline"]) if per_type is not None else []
    cols = _colors(colors, names)
    with style():
        fig = _new_figure(DOUBLE_COLUMN, 3.2)
        ax_roc, ax_auc = fig.subplots(1, 2, width_ratios=[1, 1.7])
        if roc is not None and len(roc):
            auc = roc.groupby("pipeline")["auroc"].first()
            ranked = sorted(auc.index, key=lambda p: (p in CONTROL_STYLES, -auc[p], p))
            for p in ranked:
                c = roc[roc["pipeline"] == p]
                st = CONTROL_STYLES.get(p, {})
                ax_roc.plot(c["fpr"], c["tpr"], color=cols.get(p), linestyle=st.get("linestyle", "-"),
                            linewidth=1.1, label=f"{p}  {c['auroc'].iloc[0]:.2f}")
            ax_roc.plot([0, 1], [0, 1], color="#BBBBBB", linewidth=0.6, linestyle="-", zorder=0)
            ax_roc.legend(loc="upper left", bbox_to_anchor=(0.0, -0.28), fontsize=6, handlelength=1.5,
                          title="AUROC", title_fontsize=6, borderaxespad=0.2, labelspacing=0.25, ncol=2)
        else:
            ax_roc.text(0.5, 0.5, "per-cell predictions not supplied\n(ROC needs the predictions files)",
                        ha="center", va="center", fontsize=6.5, color="#555555", transform=ax_roc.transAxes)
        ax_roc.set_xlim(0, 1)
        ax_roc.set_ylim(0, 1.01)
        ax_roc.set_box_aspect(1)
        ax_roc.set_xlabel("false positive rate\n(known cells called novel)")
        ax_roc.set_ylabel("true positive rate\n(novel cells found)")
        ax_roc.set_title("ROC, pooled over folds\nand held-out types", fontsize=7)
        if per_type is not None:
            per_type = per_type.assign(cat=[g if per_type["dataset"].nunique() == 1 else f"{d}: {g}"
                                            for d, g in zip(per_type["dataset"], per_type["group"])])
            cats = list(pd.unique(per_type["cat"]))
            pipes = list(pd.unique(per_type.sort_values(["role", "pipeline"], ascending=[False, True])
                                   ["pipeline"]))
            step = 0.7 / max(len(pipes), 1)
            for k, p in enumerate(pipes):
                q = per_type[per_type["pipeline"] == p].set_index("cat").reindex(cats)
                xs = np.arange(len(cats)) - 0.35 + step * (k + 0.5)
                marker = "o" if p not in CONTROL_STYLES else "x"
                ax_auc.scatter(xs, q["value"], color=cols.get(p), marker=marker, s=14, zorder=3,
                               label=p, linewidths=0.9 if marker == "x" else 0)
            ax_auc.axhline(0.5, color="#999999", linewidth=0.6, linestyle="-", zorder=0)
            ax_auc.text(-0.48, 0.505, "chance", fontsize=6, color="#777777", ha="left",
                        va="bottom")
            ax_auc.set_xticks(range(len(cats)), cats, rotation=35 if len(cats) > 4 else 0, ha="right"
                              if len(cats) > 4 else "center", rotation_mode="anchor")
            ax_auc.set_xlim(-0.5, len(cats) - 0.5)
            ax_auc.set_ylim(0, 1.0)
            ax_auc.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=6)
            ax_auc.yaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
            ax_auc.set_axisbelow(True)
        else:
            ax_auc.text(0.5, 0.5, "no novelty_auroc in the metrics table", ha="center", va="center",
                        fontsize=6.5, color="#555555", transform=ax_auc.transAxes)
        ax_auc.set_xlabel("held-out cell type (absent from training)")
        ax_auc.set_ylabel("novelty AUROC\n(mean over folds)")
        ax_auc.set_title("Per held-out type", fontsize=7)
        if title:
            fig.suptitle(title, fontsize=8)
    return fig


# --------------------------------------------------------------------------- runtime / memory

def read_benchmarks(root: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read Snakemake ``benchmark:`` files ``benchmarks/<rule>/<...>.tsv``.

    Parameters
    ----------
    root
        The ``benchmarks`` folder, or an iterable of files (the rule is then the parent folder).

    Returns
    -------
    Columns ``rule, job, s, max_rss`` (+ the other benchmark columns); ``-``/``NA`` become NaN.
    """
    if isinstance(root, (str, os.PathLike)):
        root = Path(root)
        files = sorted(root.rglob("*.tsv")) if root.exists() else []
        rel = [f.relative_to(root) for f in files]
        rules = [r.parts[0] if len(r.parts) > 1 else r.stem for r in rel]
        jobs = [str(Path(*r.parts[1:]).with_suffix("")) if len(r.parts) > 1 else r.stem for r in rel]
    else:
        files = [Path(f) for f in root]
        rules = [f.parent.name for f in files]
        jobs = [f.stem for f in files]
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
    """Wall time and peak memory (max RSS) per rule, one dot per job, bar = median.

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
                ax.barh(i, np.median(v[ok]), height=0.6, color=OKABE_ITO["sky_blue"], alpha=0.55,
                        zorder=1, linewidth=0)
                ax.scatter(v[ok], i + jitter[ok], s=5, color=OKABE_ITO["blue"], zorder=2, linewidths=0)
        ax_t.set_yticks(range(len(order)), [f"{r} (n={counts[r]})" for r in order])
        ax_t.set_xscale("log")
        # plain numbers at 1-2-5 steps instead of crowded "3x10^0" minor labels
        ax_t.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax_t.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax_t.xaxis.set_minor_formatter(NullFormatter())
        ax_t.set_xlabel("wall-clock time per job (s, log scale)")
        ax_m.set_xlabel("peak memory per job (max RSS, MB)")
        has_mem = b["mem_mb"].notna().any()
        if has_mem and np.nanmax(b["mem_mb"]) / max(np.nanmin(b["mem_mb"].where(b["mem_mb"] > 0)), 1e-9) > 50:
            ax_m.set_xscale("log")
        if not has_mem:
            ax_m.text(0.5, 0.5, "max_rss not recorded", transform=ax_m.transAxes, ha="center")
        for ax in (ax_t, ax_m):
            ax.xaxis.grid(True, linewidth=0.3, color="#DDDDDD", which="both", zorder=0)
            ax.set_axisbelow(True)
        ax_t.set_title("Runtime per rule (bar = median, dots = jobs)", fontsize=7)
        ax_m.set_title("Memory per rule", fontsize=7)
    return fig


# --------------------------------------------------------------------------- all figures

def make_figures(summary: pd.DataFrame, outdir: str | os.PathLike, metrics: pd.DataFrame | None = None,
                 reference: pd.DataFrame | None = None, predictions: pd.DataFrame | None = None,
                 benchmarks: pd.DataFrame | None = None, metric: str = "macro_f1",
                 dataset_aliases: Mapping[str, str] | None = None, novel_type_title: str | None = None,
                 novel_type_dataset: str | None = None) -> dict[str, tuple[Path, Path]]:
    """Write every figure of :data:`FIGURES` to ``outdir`` as PNG + PDF (placeholders if no data).

    Parameters
    ----------
    summary
        The score stage's pooled scores with intervals (``results/summary.tsv``): every number in
        the figures comes from it (nothing is re-summarized here).
    outdir
        e.g. ``results/figures``.
    metrics
        Per-fold scores (``results/metrics.tsv``), for the per-type novelty panel; optional.
    reference
        Published numbers (:func:`sclinbench.report.read_reference`), for the cross-species bars.
    predictions
        Per-cell predictions of one novel-type task (for the ROC panel); optional.
    benchmarks
        :func:`read_benchmarks` output; optional.
    metric, dataset_aliases
        Passed on to the figures.
    novel_type_title
        Title of the novel-type figure (say which dataset/task the predictions come from).

    Returns
    -------
    Stem -> (PNG path, PDF path).
    """
    outdir = Path(outdir)
    summary = contracts.check_summary(summary)
    view = report.summary_view(summary)
    colors = pipeline_colors(sorted(pd.unique(summary["pipeline"])))
    builders = {
        "cross_species_heatmap": lambda: cross_species_heatmap(summary, metric=metric),
        "cross_species_average": lambda: cross_species_average_bars(
            summary, reference, metric=metric, dataset_aliases=dataset_aliases, colors=colors),
        "pipeline_scores": lambda: pipeline_scores(view, metric, colors=colors),
        "normalization_model": lambda: normalization_model_heatmap(view, metric),
        "disease": lambda: disease_levels(view, metric, colors=colors),
        "novel_type": lambda: novel_type_detection(predictions, metrics, colors=colors,
                                                 title=novel_type_title, dataset=novel_type_dataset),
        "runtime_memory": lambda: runtime_memory(benchmarks if benchmarks is not None
                                                 else pd.DataFrame(columns=["rule", "job", "s", "max_rss"])),
    }
    written = {}
    for stem in FIGURES:
        fig = builders[stem]()
        written[stem] = save_figure(fig, outdir / f"{stem}.png", outdir / f"{stem}.pdf")
    return written
