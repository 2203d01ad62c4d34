"""Cross-species figures: the train x test species heatmap and the average bars beside the published numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from sclinbench import report
from sclinbench.data.species import common_name, short_label
from sclinbench.plotting.styling import (
    DOUBLE_COLUMN,
    EMBEDDING_NOTE,
    HEATMAP_CMAP,
    PUBLISHED_HATCHES,
    SINGLE_COLUMN,
    _annotate_cell,
    _colors,
    _new_figure,
    _pipeline_label,
    _upper_limit,
    control_styles,
    placeholder_figure,
    style,
)
from sclinbench.workflow import contracts


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
