"""The ``analyses`` rule: per-dataset tables -> results/analyses/*.tsv, the figures, and the section of
results/README.md that shows each analysis beside the paper's published numbers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sclinbench.analyses import figures
from sclinbench.analyses.common import read_published
from sclinbench.analyses.manifold import MANIFOLD_COLUMNS, MANIFOLD_SUMMARY_COLUMNS
from sclinbench.analyses.structure import SPEARMAN_COLUMNS, STRUCTURE_COLUMNS
from sclinbench.analyses.tf_targets import GENE_COLUMNS, GRID_COLUMNS, SETTINGS, TF_COLUMNS
from sclinbench.workflow.io import write_table

#: output stem -> columns of results/analyses/<stem>.tsv
TABLES = {"structure": STRUCTURE_COLUMNS, "structure_spearman": SPEARMAN_COLUMNS, "manifold": MANIFOLD_COLUMNS,
          "manifold_summary": MANIFOLD_SUMMARY_COLUMNS, "tf_targets": TF_COLUMNS, "tf_targets_grid": GRID_COLUMNS,
          "tf_targets_genes": GENE_COLUMNS}
FIGURES = ("structure", "manifold", "tf_targets")


def _concat(paths, columns) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t") for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _fmt(v, digits=3) -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def _ci(row, lo="ci_low", hi="ci_high", digits=3) -> str:
    a, b = row.get(lo), row.get(hi)
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
        return "no interval"
    return f"[{a:.{digits}f}, {b:.{digits}f}]"


def _md(rows: list[list], header: list[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def markdown(tables: dict[str, pd.DataFrame], published: pd.DataFrame, level: float = 0.95) -> str:
    """The analyses section of results/README.md (ours computed here; the paper's marked published)."""
    lines = ["## Analyses beyond classification (Souza & Mehta 2026, Sec. III, VI, VII)\n",
             "Computed here from the standardized datasets (`results/analyses/`); the paper's numbers are "
             "marked **published** (config/published_analyses.tsv) and come from the paper's datasets, which "
             "the embedded default run does not have.\n"]
    pub = published
    s = tables["structure_spearman"]
    lines.append("### Structure across species (`structure.tsv`, `structure_spearman.tsv`, `structure.png`)\n")
    rows = []
    for r in s.to_dict("records"):
        rows.append([r["dataset"], r["statistic"], r["setting"], _fmt(r["value"]), _ci(r),
                     "" if not np.isfinite(r["p_value"]) else f"{r['p_value']:.1e}", int(r["n_points"]),
                     int(r["n_species"]), int(r["n_genes"]), f"{r['interval']} (n = {int(r['n_draws'])})",
                     "computed here"])
    for r in pub[pub["analysis"] == "structure"].to_dict("records"):
        rows.append([r["dataset"], r["key"], "observed", _fmt(r["value"]), "", r["detail"], "", "", "", "",
                     "**published**"])
    if rows:
        lines += _md(rows, ["dataset", "statistic", "setting", "value", f"{level:.0%} interval", "p", "points",
                            "species", "genes", "interval method", "source"])
        lines.append("\nPoints: every non-reference species x cell type; cosine of its pseudobulk rankz to the "
                     "reference species' same type. Intervals are basic bootstrap intervals over cells within each "
                     "species x type (corrected for the downward bias of a cosine between noisy pseudobulks; "
                     "`bootstrap_bias` in the tables). The control permutes cell-type labels within each species: "
                     "its specificity sits at 0 and its match rate at chance, while its cosine still falls with "
                     "divergence (whole-species differences): read the specificity and match rate for type "
                     "structure.\n")
    m = tables["manifold_summary"]
    lines.append("### Manifold linearity (`manifold.tsv`, `manifold_summary.tsv`, `manifold.png`)\n")
    pm = pub[pub["analysis"] == "manifold"]
    ks = list(m["k"].drop_duplicates()) if len(m) else sorted(pd.to_numeric(pm["key"]).astype(int).unique())
    wide = []
    for (dataset, rep, setting), g in m.groupby(["dataset", "representation", "setting"], sort=False):
        g = g.set_index("k")
        wide.append([dataset, rep, setting] + [f"{_fmt(g.loc[k, 'mean_r'])} {_ci(g.loc[k])}" if k in g.index else ""
                                               for k in ks] + [int(g["n_draws"].max()), "computed here"])
    for dataset, g in pm.groupby("dataset", sort=False):
        g = g.set_index("key")
        wide.append([dataset, "counts", "observed"] + [_fmt(g.loc[str(k), "value"]) if str(k) in g.index else ""
                                                      for k in ks] + ["", "**published**"])
    if wide:
        lines += _md(wide, ["dataset", "representation", "setting"] + [f"k = {k}" for k in ks] + ["draws", "source"])
        lines.append(f"\nPearson r of Euclidean and Isomap geodesic distances; brackets: the {level:.0%} range over "
                     "independent seeded subsamples (draws). The control permutes every gene's values across the "
                     "drawn cells: the r of a cloud with no structure between genes.\n")
    t = tables["tf_targets"]
    lines.append("### Transcription-factor target recovery (`tf_targets.tsv`, `tf_targets_grid.tsv`, "
                 "`tf_targets_genes.tsv`, `tf_targets.png`)\n")
    rows = []
    for r in t.to_dict("records"):
        if not np.isfinite(r.get("n_significant", np.nan)):
            rows.append([r["dataset"], r["tf"], r["setting"], "TF not measured", "", "", "", "", "", "computed here"])
            continue
        q = "" if not np.isfinite(r["quantile"]) else f"q {r['quantile']:.2f}, min freq {r['min_frequency']:.2f}"
        rows.append([r["dataset"], r["tf"], r["setting"], q, f"{_fmt(r['n_significant'], 1)} {_ci(r, 'n_significant_ci_low', 'n_significant_ci_high', 1)}",
                     _fmt(r["n_in_string"], 1), f"{_fmt(r['rate'])} {_ci(r, 'rate_ci_low', 'rate_ci_high')}",
                     _fmt(r["base_rate"]), f"{r['interval']} (n = {int(r['n_draws'])})" if r["n_draws"] else r["interval"],
                     "computed here"])
    pt = pub[pub["analysis"] == "tf_targets"]
    for (dataset, tf), g in pt.groupby(["dataset", "key"], sort=False):
        g = g.set_index("statistic")["value"]
        rows.append([dataset, tf, SETTINGS["tuned"], "paper's grid", _fmt(g.get("n_significant"), 0),
                     _fmt(g.get("n_in_string"), 0), _fmt(g.get("rate")), "", "", "**published**"])
    if rows:
        lines += _md(rows, ["dataset", "TF", "setting", "q, min frequency", "significant", "in STRING", "rate",
                            "base rate", "interval method", "source"])
        src = t["string_source"].dropna().astype(str)
        lines.append("\nSignificant: BH FDR below the threshold of the z-scored PMI across genes (two-sided). "
                     "Rate: share of the significant genes STRING links to the TF; base rate: the share among all "
                     "tested genes (what a random gene set reaches). The tuned row is chosen on the result, as the "
                     "paper does (optimistic); the controls permute TF activity across cells (the re-tuned control "
                     "runs the grid again on each permutation)."
                     + (f" STRING files: {src.iloc[0]}." if len(src) else "") + "\n")
    return "\n".join(lines) + "\n"


def gather(inputs: dict[str, list], outdir: str | os.PathLike, published_path, level: float = 0.95) -> dict:
    """Concatenate the per-dataset tables (``inputs[stem]`` = files), write results/analyses/<stem>.tsv,
    the three figures (PNG + PDF) and ``analyses.md``; return the tables."""
    outdir = Path(outdir)
    tables = {stem: _concat(inputs.get(stem) or [], cols) for stem, cols in TABLES.items()}
    for stem, table in tables.items():
        write_table(table, outdir / f"{stem}.tsv")
    published = read_published(published_path)
    figs = {"structure": figures.structure_figure(tables["structure"], tables["structure_spearman"],
                                                  published[published["analysis"] == "structure"]),
            "manifold": figures.manifold_figure(tables["manifold_summary"],
                                                published[published["analysis"] == "manifold"]),
            "tf_targets": figures.tf_figure(tables["tf_targets"], published[published["analysis"] == "tf_targets"])}
    figures.write_figures(figs, {s: (outdir / f"{s}.png", outdir / f"{s}.pdf") for s in FIGURES})
    from sclinbench.report.markdown import write_text

    write_text(markdown(tables, published, level), outdir / "analyses.md")
    return tables
