"""Per-pipeline scores: one facet per dataset x task, the normalization x model heatmap, disease levels."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sclinbench import report
from sclinbench.plotting.styling import (
    DOUBLE_COLUMN,
    EMBEDDING_NOTE,
    HEATMAP_CMAP,
    MODEL_ORDER,
    REPRESENTATION_ORDER,
    SINGLE_COLUMN,
    _colors,
    _luminance,
    _new_figure,
    _pipeline_label,
    _upper_limit,
    control_styles,
    placeholder_figure,
    style,
)


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
