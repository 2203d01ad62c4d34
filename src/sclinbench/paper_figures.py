"""The figures of Souza & Mehta 2026, by name: ours beside the published numbers, each with its tidy TSV.

One function per figure builds the tidy table behind it (every number the figure draws, one row
each, ``source`` = ``computed here`` or ``published``); the figure is drawn from that table only,
in the style of :mod:`sclinbench.plotting`. :func:`make_paper_figures` writes
``<outdir>/<name>.png|pdf|tsv`` for the figures the configuration's ``report.paper_figures`` names
(figure name -> the tasks it shows; docs/paper_figures.md says which paper figure each one is).

Our rows are the pipelines declared before the run (``report.declared``) that ran on the task, and
its controls: nothing is chosen on the evaluation folds here. Every one of our numbers is the score
stage's pooled (or, for repeated hold-outs, mean-over-splits) score with its 95% interval and the
number of units it resamples (``results/summary.tsv``); none is recomputed. Published numbers come
from ``config/reference_results.tsv`` only; a figure whose published values no source holds says so
instead of showing any.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from sclinbench import plotting, report
from sclinbench.data.species import common_name, short_label
from sclinbench.errors import SclinbenchError
from sclinbench.workflow import contracts
from sclinbench.workflow.contracts import PAPER_FIGURES
from sclinbench.workflow.io import write_table

#: Columns of every figure's TSV (empty where a column does not apply to a row).
PAPER_TABLE_COLUMNS = ["figure", "source", "dataset", "task", "protocol", "split_kind", "kind", "group",
                       "training_species", "target_species", "model", "role", "metric", "value", "ci_low",
                       "ci_high", "n", "unit", "interval", "includes_diagonal", "citation", "note"]
#: Why the spermatogenesis matrix has no published panel.
NO_PUBLISHED_MATRIX = ("published matrix: values not available. No source this project holds tabulates "
                       "the paper's 8 x 8 matrix (config/reference_results.tsv has per-training-species "
                       "averages only); nothing is read off the figure here.")
OURS_NOTE = "ours: pooled score, 95% bootstrap interval over the held-out units (n)"


def _no_published(what: str) -> str:
    return (f"No published {what} in config/reference_results.tsv (the published foundation-model numbers "
            "this project holds are the spermatogenesis averages per training species).")


def _ours(summary: pd.DataFrame, tasks: Sequence[str], declared: Sequence[str], metric: str,
          groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Summary rows of the declared pipelines and the controls on ``tasks`` at ``metric``."""
    s = summary[summary["task"].isin(list(tasks)) & (summary["metric"] == metric)]
    s = s[s["pipeline"].isin(list(declared)) | (s["role"] == "control")]
    if groups is not None:
        s = s[s["group"].isin(list(groups))]
    return s


def _computed_rows(rows: pd.DataFrame, figure: str, **extra) -> pd.DataFrame:
    out = pd.DataFrame({
        "figure": figure, "source": report.COMPUTED, "dataset": rows["dataset"].to_numpy(),
        "task": rows["task"].to_numpy(), "protocol": rows["protocol"].to_numpy(),
        "split_kind": rows["split_kind"].to_numpy(), "kind": rows["kind"].to_numpy(),
        "group": rows["group"].to_numpy(), "training_species": "", "target_species": "",
        "model": rows["pipeline"].to_numpy(), "role": rows["role"].to_numpy(),
        "metric": rows["metric"].to_numpy(), "value": rows["value"].astype(float).to_numpy(),
        "ci_low": rows["ci_low"].astype(float).to_numpy(), "ci_high": rows["ci_high"].astype(float).to_numpy(),
        "n": rows["n_units"].to_numpy(), "unit": rows["unit"].to_numpy(), "interval": rows["interval"].to_numpy(),
        "includes_diagonal": "", "citation": "this workflow (sclinbench)", "note": "",
    })
    for key, value in extra.items():
        out[key] = value
    return out


def _published_rows(reference: pd.DataFrame | None, figure: str, kind: str, datasets: Sequence[str],
                    metric: str) -> pd.DataFrame:
    if reference is None or not len(reference):
        return pd.DataFrame(columns=PAPER_TABLE_COLUMNS)
    r = reference[(reference["task"] == kind) & reference["dataset"].isin(list(datasets))
                  & (reference["metric"] == metric)]
    return pd.DataFrame({
        "figure": figure, "source": report.PUBLISHED, "dataset": r["dataset"].to_numpy(), "task": "",
        "protocol": "", "split_kind": "", "kind": kind, "group": "",
        "training_species": [common_name(s) if s else "" for s in r["training_species"]],
        "target_species": "", "model": r["model"].to_numpy(), "role": "published",
        "metric": r["metric"].to_numpy(), "value": r["value"].astype(float).to_numpy(), "ci_low": np.nan,
        "ci_high": np.nan, "n": np.nan, "unit": "", "interval": "none published",
        "includes_diagonal": r["includes_diagonal"].to_numpy(), "citation": r["citation"].to_numpy(),
        "note": r["note"].to_numpy(),
    })


def _tidy(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=PAPER_TABLE_COLUMNS)
    out = pd.concat(parts, ignore_index=True)[PAPER_TABLE_COLUMNS]
    for col in ("value", "ci_low", "ci_high", "n"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def _datasets_of(summary: pd.DataFrame, tasks: Sequence[str]) -> list[str]:
    return sorted(pd.unique(summary.loc[summary["task"].isin(list(tasks)), "dataset"]))


# --------------------------------------------------------------------------- the tables

def tabula_sapiens_table(summary: pd.DataFrame, reference: pd.DataFrame | None, tasks: Sequence[str],
                         declared: Sequence[str]) -> pd.DataFrame:
    """Cell typing per tissue: macro F1 of every declared pipeline and control on each task (the
    paper's 5 x 80/20 hold-outs, the strict donor-held-out twin), with the published per-tissue
    numbers of ``reference`` (task ``celltype``, matched by dataset name)."""
    ours = _ours(summary, tasks, declared, "macro_f1", groups=[""])
    return _tidy([_computed_rows(ours, "tabula_sapiens"),
                  _published_rows(reference, "tabula_sapiens", "celltype", _datasets_of(summary, tasks),
                                  "macro_f1")])


def spermatogenesis_matrix_table(summary: pd.DataFrame, tasks: Sequence[str],
                                 declared: Sequence[str]) -> pd.DataFrame:
    """Every training x target species pair (diagonal: the same-species hold-out) of the declared
    pipelines and controls. No published rows: :data:`NO_PUBLISHED_MATRIX`."""
    pairs = report.cross_species_pairs(summary, "macro_f1")
    pairs = pairs[pairs["task"].isin(list(tasks))
                  & (pairs["pipeline"].isin(list(declared)) | (pairs["role"] == "control"))]
    s = summary.merge(pairs[["dataset", "task", "pipeline", "training_species", "target_species"]]
                      .assign(group=[f"{a}->{b}" for a, b in zip(pairs["training_species"], pairs["target_species"])]),
                      on=["dataset", "task", "pipeline", "group"], how="inner")
    s = s[s["metric"] == "macro_f1"]
    rows = _computed_rows(s, "spermatogenesis_matrix")
    rows["training_species"] = [common_name(x) for x in s["training_species"]]
    rows["target_species"] = [common_name(x) for x in s["target_species"]]
    rows["note"] = np.where(s["training_species"].to_numpy() == s["target_species"].to_numpy(),
                            "same species: held-out cells of the training species", "transfer")
    return _tidy([rows])


def spermatogenesis_by_species_table(summary: pd.DataFrame, reference: pd.DataFrame | None,
                                     tasks: Sequence[str], declared: Sequence[str],
                                     dataset_aliases: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Mean macro F1 over target species per training species: ours including the same-species
    pair (the paper's average) and excluding it (strict), with the published per-species values."""
    parts = []
    for incl in (True, False):
        avg = report.cross_species_average(summary, incl, "macro_f1")
        avg = avg[avg["task"].isin(list(tasks)) & (avg["pipeline"].isin(list(declared)) | (avg["role"] == "control"))]
        if avg.empty:
            continue
        table = report.published_table(reference if reference is not None else
                                       pd.DataFrame(columns=list(report.REFERENCE_COLUMNS)),
                                       avg, dataset_aliases=dataset_aliases)
        mine = table[table["source"] == report.COMPUTED]
        rows = _computed_rows(avg.rename(columns={"mean": "value", "n": "n_units"}).assign(
            split_kind="cross_species", group=[f"{s}->*" + (" incl. same-species" if incl else "")
                                               for s in avg["training_species"]], unit="target species"),
            "spermatogenesis_by_species")
        rows["training_species"] = mine["training_species"].to_numpy()
        rows["includes_diagonal"] = "true" if incl else "false"
        rows["note"] = mine["note"].to_numpy()
        parts.append(rows)
        if incl and reference is not None:
            pub = table[table["source"] == report.PUBLISHED]
            pub = pub[pub["training_species"].isin(set(mine["training_species"]))]  # species run here
            parts.append(pd.DataFrame({
                "figure": "spermatogenesis_by_species", "source": report.PUBLISHED,
                "dataset": pub["dataset"].to_numpy(), "task": "", "protocol": "", "split_kind": "",
                "kind": "cross_species", "group": "", "training_species": pub["training_species"].to_numpy(),
                "target_species": "", "model": pub["model"].to_numpy(), "role": "published",
                "metric": pub["metric"].to_numpy(), "value": pub["value"].to_numpy(), "ci_low": np.nan,
                "ci_high": np.nan, "n": np.nan, "unit": "", "interval": "none published",
                "includes_diagonal": pub["includes_diagonal"].to_numpy(), "citation": pub["citation"].to_numpy(),
                "note": pub["note"].to_numpy()}))
    return _tidy(parts)


def infection_table(summary: pd.DataFrame, reference: pd.DataFrame | None, tasks: Sequence[str],
                    declared: Sequence[str]) -> pd.DataFrame:
    """Infected vs not per cell: macro F1 of the declared pipelines and controls on each task; the
    note gives the test cells a fallback model scored (``leiden_logreg``)."""
    ours = _ours(summary, tasks, declared, "macro_f1", groups=[""])
    rows = _computed_rows(ours, "infection")
    keys = ["dataset", "task", "pipeline"]
    counts = summary[summary["task"].isin(list(tasks)) & summary["metric"].isin(["n_test_cells", "n_fallback"])
                     & (summary["group"] == "")]
    counts = counts.pivot_table(index=keys, columns="metric", values="value", aggfunc="max")
    notes = []
    for key in zip(ours["dataset"], ours["task"], ours["pipeline"]):
        c = counts.loc[key] if key in counts.index else pd.Series(dtype=float)
        n_test, n_fb = c.get("n_test_cells", np.nan), c.get("n_fallback", np.nan)
        notes.append("" if not np.isfinite(n_test) else
                     f"{int(n_test)} test cells; {0 if not np.isfinite(n_fb) else int(n_fb)} scored by a fallback model")
    rows["note"] = notes
    return _tidy([rows, _published_rows(reference, "infection", "disease", _datasets_of(summary, tasks),
                                        "macro_f1")])


def novel_types_table(summary: pd.DataFrame, reference: pd.DataFrame | None, tasks: Sequence[str],
                      declared: Sequence[str]) -> pd.DataFrame:
    """Novel cell-type detection: novelty AUROC (mean over held-out types, interval over them) of
    the declared pipelines and controls per tissue, with any published numbers."""
    ours = _ours(summary, tasks, declared, "novelty_auroc", groups=[""])
    return _tidy([_computed_rows(ours, "novel_types"),
                  _published_rows(reference, "novel_types", "novel_type", _datasets_of(summary, tasks),
                                  "novelty_auroc")])


# --------------------------------------------------------------------------- the figures

def _label(dataset: str) -> str:
    return dataset[3:].replace("_", " ") if dataset.startswith("ts_") else dataset


def _styles(table: pd.DataFrame, summary: pd.DataFrame) -> tuple[dict, dict]:
    controls = plotting.control_styles(summary)
    colors = plotting.pipeline_colors(sorted(pd.unique(summary["pipeline"])), controls)
    return colors, controls


def _published_legend(models: Sequence[str]) -> list:
    return [Line2D([], [], marker="D", markerfacecolor="white", markeredgecolor="black", linestyle="",
                   markersize=3.5, label=f"{m} (published)") for m in models]


def score_dots(table: pd.DataFrame, summary: pd.DataFrame, title: str, ylabel: str, xlabel: str,
               note: str = "") -> Figure:
    """One panel per task, one row per dataset: our pipelines as points with 95% intervals (n per
    row at the right), controls as open markers, published numbers as open diamonds."""
    ours = table[table["source"] == report.COMPUTED]
    pub = table[table["source"] == report.PUBLISHED]
    tasks = list(dict.fromkeys(ours["task"]))
    datasets = sorted(set(ours["dataset"]) | set(pub["dataset"]))
    colors, controls = _styles(table, summary)
    methods = list(dict.fromkeys(ours.loc[ours["role"] == "method", "model"]))
    ctrls = sorted(set(ours.loc[ours["role"] == "control", "model"]))
    pub_models = list(dict.fromkeys(pub["model"]))
    width = plotting.SINGLE_COLUMN if len(tasks) <= 1 else plotting.DOUBLE_COLUMN
    height = 1.3 + 0.2 * len(datasets) * max(1.0, (len(methods) + 1) / 4)
    with plotting.style():
        fig = plotting._new_figure(width, height)
        axes = fig.subplots(1, max(len(tasks), 1), squeeze=False, sharey=True)[0]
        y_of = {d: i for i, d in enumerate(datasets)}
        # published numbers sit beside the task of the paper's protocol (else the first task)
        paper_tasks = list(dict.fromkeys(ours.loc[ours["protocol"] == "paper", "task"]))
        pub_task = (paper_tasks or tasks or [None])[0]
        step = 0.7 / max(len(methods), 1)
        for ax, task in zip(axes, tasks):
            t = ours[ours["task"] == task]
            for k, p in enumerate(methods):
                r = t[t["model"] == p]
                ys = r["dataset"].map(y_of).to_numpy(float) - 0.35 + step * (k + 0.5)
                lo = np.clip(r["value"] - r["ci_low"], 0, None).fillna(0).to_numpy(float)
                hi = np.clip(r["ci_high"] - r["value"], 0, None).fillna(0).to_numpy(float)
                ax.errorbar(r["value"], ys, xerr=[lo, hi], fmt="o", color=colors.get(p), markersize=3,
                            elinewidth=0.9, capsize=1.2, zorder=3, label=p)
            for c in ctrls:
                r = t[t["model"] == c]
                st = controls.get(c, {"color": "#777777", "marker": "s"})
                hollow = ({"facecolors": "none", "edgecolors": st["color"]} if st["marker"] in ("s", "^")
                          else {"color": st["color"]})  # open shapes; line markers (x, +) take the colour
                ax.scatter(r["value"], r["dataset"].map(y_of), marker=st["marker"], s=10, zorder=2,
                           linewidths=0.7, **hollow)
            for model in (pub_models if task == pub_task else []):
                r = pub[pub["model"] == model]
                ax.scatter(r["value"], r["dataset"].map(y_of), marker="D", s=12, facecolors="white",
                           edgecolors="black", linewidths=0.7, zorder=4)
            for d in datasets:
                here = t[(t["dataset"] == d) & (t["role"] == "method")]
                if here.empty:
                    ax.text(0.02, y_of[d], "not in this task", fontsize=5.5, color="#777777", va="center")
                    continue
                n, unit = here["n"].max(), str(here["unit"].iloc[0])
                ax.text(1.06, y_of[d], f"n={int(n)} {unit}{'s' if n != 1 and unit else ''}", fontsize=5,
                        color="#444444", va="center", ha="left", clip_on=False)
            first = t.iloc[0] if len(t) else None
            sub = "" if first is None else f"\n{first['split_kind']} · protocol {first['protocol']}"
            ax.set_title(f"{task}{sub}", fontsize=6.5, fontweight="normal", loc="left")
            plotting._upper_limit(ax, "x")
            ax.set_xlabel(xlabel)
            ax.xaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
            ax.set_axisbelow(True)
        axes[0].set_yticks(range(len(datasets)), [_label(d) for d in datasets])
        axes[0].set_ylim(len(datasets) - 0.5, -0.5)
        axes[0].set_ylabel(ylabel)
        handles = [Line2D([], [], color=colors.get(p), marker="o", markersize=3, label=p) for p in methods]
        handles += [Line2D([], [], color=controls[c]["color"], marker=controls[c]["marker"], linestyle="",
                           markerfacecolor="none", markersize=3.5, label=controls[c]["label"])
                    for c in ctrls if c in controls]
        handles += _published_legend(pub_models)
        notes = [OURS_NOTE + "; every number in the TSV beside this figure"]
        if pub_models:
            notes.append(f"published: open diamonds, beside {pub_task} (no interval published)")
        if note:
            notes.append(note)
        fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=6,
                   title="\n".join(textwrap.fill(x, 130) for x in notes), title_fontsize=5.5)
        fig.suptitle(title, fontsize=7.5)
    return fig


def spermatogenesis_matrix_figure(table: pd.DataFrame, max_panels: int = 4) -> Figure:
    """Training x target heatmaps of the declared pipelines (diagonal outlined: the same-species
    hold-out), beside a panel saying the published matrix is not available."""
    ours = table[(table["source"] == report.COMPUTED) & (table["role"] == "method")]
    pipes = list(dict.fromkeys(ours["model"]))[:max_panels]
    species = list(dict.fromkeys(list(ours["training_species"]) + list(ours["target_species"])))
    cmap = mpl.colormaps[plotting.HEATMAP_CMAP]
    norm = mpl.colors.Normalize(0.0, 1.0)
    n_panels = len(pipes) + 1
    ncols = min(3, n_panels)
    nrows = int(np.ceil(n_panels / ncols))
    with plotting.style():
        fig = plotting._new_figure(plotting.DOUBLE_COLUMN, 0.6 + 2.5 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        image = None
        for ax, p in zip(axes, pipes):
            r = ours[ours["model"] == p]
            mat = r.pivot_table(index="training_species", columns="target_species", values="value",
                                aggfunc="first").reindex(index=species, columns=species)
            v = mat.to_numpy(float)
            image = ax.imshow(np.ma.masked_invalid(v), cmap=cmap, norm=norm)
            ax.set_facecolor("#E5E5E5")
            for i in range(len(species)):
                for j in range(len(species)):
                    plotting._annotate_cell(ax, j, i, v[i, j], cmap, norm, fontsize=5, strip_zero=True)
                    if i == j:
                        ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False,
                                                        edgecolor="black", linewidth=0.9))
            labels = [short_label(s) for s in species]
            ax.set_xticks(range(len(species)), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=5.5)
            ax.set_yticks(range(len(species)), labels, fontsize=5.5)
            ax.set_xlabel("target species", fontsize=6)
            ax.set_ylabel("training species", fontsize=6)
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            n = r.loc[r["target_species"] != r["training_species"], "n"]
            unit = str(r["unit"].iloc[0]) if len(r) else ""
            ax.set_title(f"{p} (computed here)\nn per cell: {int(n.min()) if len(n) else 0}-"
                         f"{int(n.max()) if len(n) else 0} target {unit}s", fontsize=6, fontweight="normal")
        pub_ax = axes[len(pipes)]
        pub_ax.set_axis_off()
        pub_ax.text(0.5, 0.5, textwrap.fill(NO_PUBLISHED_MATRIX, 38), ha="center", va="center",
                    fontsize=6, color="#333333", transform=pub_ax.transAxes,
                    bbox={"boxstyle": "square", "facecolor": "white", "edgecolor": "#999999", "linestyle": "--"})
        pub_ax.set_title("Souza & Mehta 2026 (published)", fontsize=6.5)
        for ax in axes[n_panels:]:
            ax.set_visible(False)
        if image is not None:
            cbar = fig.colorbar(image, ax=list(axes[:len(pipes)]), orientation="horizontal", fraction=0.04,
                                shrink=0.6, aspect=35, pad=0.02)
            cbar.set_label("macro F1 (labels both species share); outlined: same species (held-out cells of the training species)")
            cbar.ax.tick_params(labelsize=5.5)
        fig.suptitle(f"Spermatogenesis: cell typing across {len(species)} species, every training x target pair",
                     fontsize=7.5)
        fig.supxlabel("95% intervals of every cell (bootstrap over the target's donors) in the TSV beside this figure",
                      fontsize=5.5, color="#333333")
    return fig


def spermatogenesis_by_species_figure(table: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Mean macro F1 over target species per training species: our declared pipelines (bars with
    95% intervals over target species, incl. same-species) beside the published bars (hatched)."""
    t = table[table["includes_diagonal"] != "false"]
    ours = t[(t["source"] == report.COMPUTED) & (t["role"] == "method")]
    ctrl = t[(t["source"] == report.COMPUTED) & (t["role"] == "control")]
    pub = t[t["source"] == report.PUBLISHED]
    species = list(dict.fromkeys(ours["training_species"]))
    pub = pub[pub["training_species"].isin(species)]
    colors, controls = _styles(table, summary)
    pipes, models = list(dict.fromkeys(ours["model"])), list(dict.fromkeys(pub["model"]))
    n_bars = max(len(pipes) + len(models), 1)
    with plotting.style():
        fig = plotting._new_figure(plotting.DOUBLE_COLUMN, 2.9)
        ax = fig.add_subplot()
        x0, w = np.arange(len(species)), 0.8 / n_bars
        pipe_labels = set()
        for k, p in enumerate(pipes):
            r = ours[ours["model"] == p].set_index("training_species").reindex(species)
            xs = x0 - 0.4 + w * (k + 0.5)
            lo = np.clip(r["value"] - r["ci_low"], 0, None).fillna(0).to_numpy(float)
            hi = np.clip(r["ci_high"] - r["value"], 0, None).fillna(0).to_numpy(float)
            n = int(r["n"].max()) if r["n"].notna().any() else 0
            pipe_labels.add(f"{p} (computed here, n = {n} target species)")
            ax.bar(xs, r["value"].to_numpy(float), width=w * 0.92, color=colors.get(p), zorder=2,
                   yerr=[lo, hi], error_kw={"elinewidth": 0.8, "capsize": 1.2, "zorder": 3},
                   label=f"{p} (computed here, n = {n} target species)")
        for k, m in enumerate(models):
            r = pub[pub["model"] == m].set_index("training_species").reindex(species)
            xs = x0 - 0.4 + w * (len(pipes) + k + 0.5)
            ax.bar(xs, r["value"].to_numpy(float), width=w * 0.92, facecolor="#F2F2F2", edgecolor="#555555",
                   linewidth=0.5, hatch=plotting.PUBLISHED_HATCHES[k % len(plotting.PUBLISHED_HATCHES)],
                   label=f"{m} (published)", zorder=2)
        for c in sorted(set(ctrl["model"])):
            st = controls.get(c, {"color": "#555555", "linestyle": "--", "label": c})
            r = ctrl[ctrl["model"] == c].set_index("training_species").reindex(species)
            for xi, v in zip(x0, r["value"].to_numpy(float)):
                ax.hlines(v, xi - 0.4, xi + 0.4, colors=st["color"], linestyles=[st["linestyle"]], linewidth=0.9,
                          zorder=4)
            ax.plot([], [], color=st["color"], linestyle=st["linestyle"], label=st["label"])
        ax.set_xticks(x0, [short_label(s) for s in species])
        ax.set_xlim(-0.5, len(species) - 0.5)
        plotting._upper_limit(ax, "y", bottom=0.0)
        ax.set_xlabel("training (source) species")
        ax.set_ylabel("macro F1 (shared labels)\nmean over target species")
        ax.yaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
        ax.set_axisbelow(True)
        handles, labels = ax.get_legend_handles_labels()
        rank = [0 if lab in pipe_labels else 1 if lab.endswith("(published)") else 2 for lab in labels]
        order = sorted(range(len(labels)), key=lambda i: (rank[i], i))
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0, handlelength=1.8, fontsize=5.5)
        ax.set_title("Spermatogenesis: average by source species\n(same-species hold-out included, as the paper)",
                     fontsize=7)
        note = ("Published: read off a figure (about ±0.01), as tabulated in the Souza & Mehta notebook; whether "
                "they include the same-species score is not stated; no interval published." if models
                else _no_published("spermatogenesis averages"))
        fig.supxlabel(textwrap.fill(note + " Ours: 95% bootstrap interval over target species; the strict "
                                    "average (same species excluded) is in the TSV.", 160),
                      fontsize=5.5, color="#333333")
    return fig


# --------------------------------------------------------------------------- all of them

def _placeholder(name: str, tasks: Sequence[str]) -> Figure:
    return plotting.placeholder_figure(name.replace("_", " "), f"No results of {', '.join(tasks)} with the "
                                       "declared pipelines in this run's summary.")


def paper_figure(name: str, summary: pd.DataFrame, tasks: Sequence[str], declared: Sequence[str],
                 reference: pd.DataFrame | None = None,
                 dataset_aliases: Mapping[str, str] | None = None) -> tuple[Figure, pd.DataFrame]:
    """The figure ``name`` (one of :data:`~sclinbench.workflow.contracts.PAPER_FIGURES`) and its tidy table."""
    summary = contracts.check_summary(summary)
    if name == "tabula_sapiens":
        table = tabula_sapiens_table(summary, reference, tasks, declared)
        pub = (table["source"] == report.PUBLISHED).any()
        fig = lambda: score_dots(table, summary, "Tabula Sapiens v2 (donors held out of TranscriptFormer's "  # noqa: E731
                                 "training): cell typing per tissue", "tissue", "macro F1",
                                 "" if pub else _no_published("per-tissue Tabula Sapiens numbers"))
    elif name == "spermatogenesis_matrix":
        table = spermatogenesis_matrix_table(summary, tasks, declared)
        fig = lambda: spermatogenesis_matrix_figure(table)  # noqa: E731
    elif name == "spermatogenesis_by_species":
        table = spermatogenesis_by_species_table(summary, reference, tasks, declared, dataset_aliases)
        fig = lambda: spermatogenesis_by_species_figure(table, summary)  # noqa: E731
    elif name == "infection":
        table = infection_table(summary, reference, tasks, declared)
        pub = (table["source"] == report.PUBLISHED).any()
        fig = lambda: score_dots(table, summary, "SARS-CoV-2 infection state per cell (COVID-19 lavage)",  # noqa: E731
                                 "dataset", "macro F1 (infected vs not)",
                                 "" if pub else _no_published("infection numbers"))
    elif name == "novel_types":
        table = novel_types_table(summary, reference, tasks, declared)
        pub = (table["source"] == report.PUBLISHED).any()
        fig = lambda: score_dots(table, summary, "Novel cell types: one type held out of training at a time",  # noqa: E731
                                 "tissue", "novelty AUROC (mean over held-out types)",
                                 "" if pub else _no_published("novel-type numbers"))
    else:
        raise SclinbenchError(f"paper figure '{name}' is unknown; known: {', '.join(PAPER_FIGURES)}")
    if not (table["source"] == report.COMPUTED).any():
        return _placeholder(name, tasks), table
    return fig(), table


def make_paper_figures(summary: pd.DataFrame, figures: Mapping[str, Sequence[str]], declared: Sequence[str],
                       outdir: str | os.PathLike, reference: pd.DataFrame | None = None,
                       dataset_aliases: Mapping[str, str] | None = None) -> dict[str, tuple[Path, Path, Path]]:
    """Write ``<outdir>/<name>.png`` (300 dpi), ``.pdf`` and ``.tsv`` for every figure of ``figures``
    (name -> tasks, config ``report.paper_figures``; tasks not in ``summary`` are left out).

    Returns
    -------
    Name -> (PNG, PDF, TSV) paths.
    """
    outdir = Path(outdir)
    written = {}
    for name, tasks in figures.items():
        fig, table = paper_figure(name, summary, list(tasks), list(declared), reference, dataset_aliases)
        png, pdf = plotting.save_figure(fig, outdir / f"{name}.png", outdir / f"{name}.pdf")
        write_table(table, outdir / f"{name}.tsv")
        written[name] = (png, pdf, outdir / f"{name}.tsv")
    return written


__all__ = ["NO_PUBLISHED_MATRIX", "PAPER_TABLE_COLUMNS", "infection_table", "make_paper_figures",
           "novel_types_table", "paper_figure", "score_dots", "spermatogenesis_by_species_figure",
           "spermatogenesis_by_species_table", "spermatogenesis_matrix_figure", "spermatogenesis_matrix_table",
           "tabula_sapiens_table"]
