"""One figure per analysis (PNG + PDF), in the package style of :mod:`sclinbench.plotting`.

Published numbers (config/published_analyses.tsv) are drawn as black crosses labelled
"published"; controls in grey; every interval the tables hold is drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sclinbench.plotting import (
    DOUBLE_COLUMN,
    OKABE_ITO,
    _new_figure,
    placeholder_figure,
    save_figure,
    style,
)

CONTROL_COLOR = "#7F7F7F"
REP_COLORS = {"counts": OKABE_ITO["blue"], "rankz": OKABE_ITO["vermillion"], "log1p": OKABE_ITO["bluish_green"]}


def _published(published: pd.DataFrame | None, analysis: str) -> pd.DataFrame:
    if published is None or not len(published):
        return pd.DataFrame(columns=["analysis", "dataset", "key", "statistic", "value"])
    return published[published["analysis"] == analysis]


def structure_figure(table: pd.DataFrame, summary: pd.DataFrame, published: pd.DataFrame | None = None):
    """Per dataset: cosine to the reference's same type vs divergence (observed with intervals,
    permuted-label control), and the specificity (cosine minus cosine to the other types)."""
    if table is None or not len(table):
        return placeholder_figure("Structure across species", "no dataset in analyses: structure: datasets")
    datasets = list(dict.fromkeys(table["dataset"]))
    pub = _published(published, "structure")
    with style():
        fig = _new_figure(DOUBLE_COLUMN, 2.3 * len(datasets))
        axes = np.atleast_2d(fig.subplots(len(datasets), 2, squeeze=False))
        for row, dataset in zip(axes, datasets):
            t = table[table["dataset"] == dataset]
            s = summary[(summary["dataset"] == dataset) & (summary["setting"] == "observed")].set_index("statistic")
            jitter = (pd.factorize(t["cell_type"])[0] - t["cell_type"].nunique() / 2) * 0.004 * max(np.ptp(t["divergence"]), 1e-9)
            x = t["divergence"].to_numpy() + jitter
            ax = row[0]
            ax.errorbar(x, t["cosine"], yerr=[np.clip(t["cosine"] - t["ci_low"], 0, None),
                                             np.clip(t["ci_high"] - t["cosine"], 0, None)],
                        fmt="o", color=OKABE_ITO["blue"], ms=3, elinewidth=0.6, label="same type (computed here)")
            ax.plot(x, t["control_cosine"], "x", color=CONTROL_COLOR, ms=3, label="control: labels permuted")
            r = s.loc["spearman_r_cosine"] if "spearman_r_cosine" in s.index else None
            title = f"{dataset}: cosine to the reference ({t['reference'].iloc[0]})"
            if r is not None:
                title += f"\nSpearman r = {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}], p = {r['p_value']:.1e}, n = {int(r['n_points'])}"
            p = pub[pub["statistic"] == "spearman_r"]
            if len(p):
                title += f"\npublished (Souza & Mehta, 8 species): r = {p['value'].iloc[0]:.3f}"
            ax.set_title(title, fontsize=6.5)
            unit = t["divergence_unit"].iloc[0] or "divergence"
            ax.set_xlabel(f"divergence from the reference ({unit})")
            ax.set_ylabel("cosine (pseudobulk rankz)")
            ax.legend(loc="lower left")
            ax = row[1]
            ax.plot(x, t["specificity"], "o", color=OKABE_ITO["orange"], ms=3, label="observed")
            ax.plot(x, t["control_specificity"], "x", color=CONTROL_COLOR, ms=3, label="control: labels permuted")
            ax.axhline(0, color="#333333", lw=0.5)
            m = s.loc["match_rate"] if "match_rate" in s.index else None
            ax.set_title("specificity: cosine to own type minus mean to the others"
                         + (f"\nnearest reference type = own type: {m['value']:.0%}" if m is not None else ""),
                         fontsize=6.5)
            ax.set_xlabel(f"divergence from the reference ({unit})")
            ax.set_ylabel("specificity")
            ax.legend(loc="best")
    return fig


def manifold_figure(summary: pd.DataFrame, published: pd.DataFrame | None = None):
    """Per dataset: Pearson r (Euclidean vs geodesic) against k, one line per representation (band:
    the range over draws), the gene-permuted control dashed, the paper's values as crosses."""
    if summary is None or not len(summary):
        return placeholder_figure("Manifold linearity", "no dataset in analyses: manifold: datasets")
    datasets = list(dict.fromkeys(summary["dataset"]))
    pub = _published(published, "manifold")
    with style():
        fig = _new_figure(DOUBLE_COLUMN, 2.4)
        axes = fig.subplots(1, len(datasets), squeeze=False)[0]
        for ax, dataset in zip(axes, datasets):
            d = summary[summary["dataset"] == dataset]
            for (rep, setting), g in d.groupby(["representation", "setting"], sort=False):
                control = setting != "observed"
                color = REP_COLORS.get(rep, "#333333")
                ax.plot(g["k"], g["mean_r"], marker="o" if not control else None, ms=2.5, color=color,
                        linestyle=(0, (3, 2)) if control else "-", lw=0.9 if not control else 0.7,
                        label=f"{rep}" + (" control: genes permuted" if control else ""))
                lo, hi = g["ci_low"], g["ci_high"]
                if lo.notna().all():
                    ax.fill_between(g["k"], lo, hi, color=color, alpha=0.15 if not control else 0.07, lw=0)
            mine = pub[pub["dataset"] == dataset]   # published numbers only beside the same dataset
            if len(mine):
                ax.plot(pd.to_numeric(mine["key"], errors="coerce"), mine["value"], "x", color="#000000", ms=4,
                        label="published: raw counts")
            n = int(d["n_draws"].max())
            other = pub[pub["dataset"] != dataset]
            note = ""
            if len(other):
                note = (f"\npublished, {other['dataset'].iloc[0]}:\ncounts r = {other['value'].min():.3f}-"
                        f"{other['value'].max():.3f}")
            ax.set_title(f"{dataset} ({n} draws){note}", fontsize=6.5)
            ax.set_xlabel("k (neighbours of the Isomap graph)")
            ax.set_ylabel("Pearson r, Euclidean vs geodesic")
        axes[-1].legend(loc="lower right", fontsize=5.5)
    return fig


def tf_figure(table: pd.DataFrame, published: pd.DataFrame | None = None):
    """Per TF: significant genes and the share in STRING, declared / tuned / controls, base rate,
    the paper's numbers as crosses."""
    t = table[table["n_significant"].notna()] if table is not None and len(table) else pd.DataFrame()
    if not len(t):
        return placeholder_figure("TF target recovery", "no TF of analyses: tf_targets: tfs was measured")
    pub = _published(published, "tf_targets")
    settings = list(dict.fromkeys(t["setting"]))
    colors = [OKABE_ITO["blue"], OKABE_ITO["orange"], "#9E9E9E", "#4D4D4D"]
    with style():
        fig = _new_figure(DOUBLE_COLUMN, 2.6)
        ax_n, ax_r = fig.subplots(1, 2)
        labels = [f"{d}/{tf}" for d, tf in dict.fromkeys(zip(t["dataset"], t["tf"]))]
        keys = list(dict.fromkeys(zip(t["dataset"], t["tf"])))
        width = 0.8 / len(settings)
        for i, setting in enumerate(settings):
            g = t[t["setting"] == setting].set_index(["dataset", "tf"]).reindex(keys)
            x = np.arange(len(keys)) + (i - (len(settings) - 1) / 2) * width
            err_n = [np.clip(g["n_significant"] - g["n_significant_ci_low"], 0, None).fillna(0),
                     np.clip(g["n_significant_ci_high"] - g["n_significant"], 0, None).fillna(0)]
            ax_n.bar(x, g["n_significant"], width, color=colors[i % 4], label=setting, yerr=err_n,
                     error_kw={"elinewidth": 0.5})
            err_r = [np.clip(g["rate"] - g["rate_ci_low"], 0, None).fillna(0),
                     np.clip(g["rate_ci_high"] - g["rate"], 0, None).fillna(0)]
            ax_r.bar(x, g["rate"], width, color=colors[i % 4], yerr=err_r, error_kw={"elinewidth": 0.5})
        base = t[t["setting"] == settings[0]].set_index(["dataset", "tf"]).reindex(keys)["base_rate"]
        ax_r.plot(np.arange(len(keys)), base, "_", color="#000000", ms=12, mew=1.2, label="base rate (all tested genes)")
        labelled = False
        for j, (dataset, tf) in enumerate(keys):   # published numbers only beside the same dataset
            p = pub[(pub["key"] == tf) & (pub["dataset"] == dataset)].set_index("statistic")["value"]
            if "n_significant" in p:
                ax_n.plot(j, p["n_significant"], "x", color="#000000", ms=4,
                          label=None if labelled else "published (tuned)")
                labelled = True
            if "rate" in p:
                ax_r.plot(j, p["rate"], "x", color="#000000", ms=4)
        for ax in (ax_n, ax_r):
            ax.set_xticks(np.arange(len(keys)), labels, rotation=30, ha="right")
        ax_n.set_ylabel("significant genes (BH FDR)")
        ax_r.set_ylabel("share of significant genes in STRING")
        ax_r.set_ylim(0, 1.04)
        ax_n.legend(loc="upper left", fontsize=5.5)
        ax_r.legend(loc="upper left", fontsize=5.5)
        src = t["string_source"].dropna().astype(str)
        others = sorted(set(pub["dataset"]) - set(t["dataset"]))
        fig.suptitle("TF target recovery" + (f" (STRING: {src.iloc[0]})" if len(src) else "")
                     + (f"; published numbers ({', '.join(others)}): results/README.md" if others else ""), fontsize=7)
    return fig


def write_figures(figures: dict, outputs: dict) -> None:
    """Save ``{stem: Figure}`` to ``outputs[stem] = (png, pdf)``."""
    for stem, fig in figures.items():
        save_figure(fig, *outputs[stem])
