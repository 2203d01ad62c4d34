"""Biological structure across species (Souza & Mehta 2026, Sec. III).

Per species x cell type, the scTOP-style pseudobulk: the mean over the group's cells of their
library fractions, then rankz (:func:`sclinbench.represent.rankz`: ranks over all genes ->
inverse normal -> L2), on the genes the dataset holds -- for a collection mapped to the reference
species' genes (``orthologs: mode: one2one``), the one-to-one orthologs common to every species.
Each non-reference group is compared with the reference species' group of the same type by cosine
similarity (the rankz rows have unit norm, so the cosine is their dot product), and the cosines are
correlated with the species' divergence from the reference (Spearman, scipy).

Beside the cosine: ``cosine_other`` (mean cosine to the reference's *other* types),
``specificity`` (cosine minus cosine_other: how much more a type resembles its own counterpart
than the other types) and ``matched`` (the nearest reference type is the same type).

Intervals: bootstrap over cells within each species x type (every group, the reference's too,
resampled with replacement, pseudobulks recomputed per draw), as *basic* (bias-corrected) intervals
``[2 t - q_hi, 2 t - q_lo]`` clipped to the statistic's range. A cosine between two noisy
pseudobulks is biased low by their sampling noise (so is a Spearman r over noisy points, towards
0), and a draw adds that noise once more: every draw's cosine falls below the estimate (on the
embedded atlas the whole percentile interval lay below it). The basic interval corrects for that
shift; ``bootstrap_bias`` (mean of the draws minus the estimate) shows its size. An interval may
therefore lie above a cosine that is biased low.
Control: cell-type
labels permuted within each species (a new permutation per draw), everything recomputed: its
specificity sits at 0 and its match rate at 1 / (number of reference types). Its cosine still falls
with divergence, because whole-species differences remain: the cosine-vs-divergence correlation
alone does not show type structure; the specificity does.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from sclinbench.analyses.common import labelled_cells
from sclinbench.data.species import common_name
from sclinbench.errors import SclinbenchError
from sclinbench.represent.normalize import normalize_total
from sclinbench.represent.rank import rankz

log = logging.getLogger("sclinbench.analyses")

STRUCTURE_COLUMNS = [
    "dataset", "species", "cell_type", "reference", "divergence", "divergence_unit", "n_cells",
    "n_cells_reference", "n_genes", "cosine", "ci_low", "ci_high", "cosine_other", "specificity",
    "bootstrap_bias", "nearest_reference_type", "matched", "control_cosine", "control_specificity", "n_boot", "n_permutations",
]
SPEARMAN_COLUMNS = [
    "dataset", "statistic", "setting", "value", "ci_low", "ci_high", "bootstrap_bias", "p_value", "n_points", "n_species",
    "n_genes", "n_draws", "unit", "interval",
]
STATISTICS = ("spearman_r_cosine", "spearman_r_specificity", "mean_specificity", "match_rate")


def pseudobulk_rankz(fractions: sp.csr_matrix, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """rankz of each group's mean library fractions: (n_groups x genes), unit rows.

    ``fractions``: cells x genes library fractions (rows sum to 1); ``codes``: the group of each
    cell (0 .. n_groups - 1, or -1 for cells in no group).
    """
    keep = codes >= 0
    counts = np.bincount(codes[keep], minlength=n_groups).astype(float)
    indicator = sp.csr_matrix((1.0 / counts[codes[keep]], (codes[keep], np.flatnonzero(keep))),
                              shape=(n_groups, fractions.shape[0]))
    return _rankz_dense(np.asarray((indicator @ fractions).todense()))


def _rankz_dense(P: np.ndarray) -> np.ndarray:
    return rankz(sp.csr_matrix(P), dtype=np.float64).toarray()


def _scores(R: np.ndarray, pairs: np.ndarray, ref_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per point (species x type, its reference row): cosine, cosine_other, specificity, nearest.

    ``pairs[i]`` = (row of the point, position of its type among ``ref_rows``); ``R`` unit rows.
    """
    sims = R[pairs[:, 0]] @ R[ref_rows].T                      # points x reference types
    own = sims[np.arange(len(pairs)), pairs[:, 1]]
    n_ref = len(ref_rows)
    other = (sims.sum(axis=1) - own) / max(n_ref - 1, 1) if n_ref > 1 else np.full(len(pairs), np.nan)
    return {"cosine": own, "cosine_other": other, "specificity": own - other, "nearest": sims.argmax(axis=1)}


def _summary_stats(s: dict[str, np.ndarray], divergence: np.ndarray, own_type: np.ndarray) -> dict[str, float]:
    def rho(y):
        if len(y) < 3 or np.ptp(divergence) == 0 or np.ptp(y) == 0:
            return np.nan
        return float(stats.spearmanr(divergence, y).statistic)

    return {"spearman_r_cosine": rho(s["cosine"]), "spearman_r_specificity": rho(s["specificity"]),
            "mean_specificity": float(np.nanmean(s["specificity"])),
            "match_rate": float(np.mean(s["nearest"] == own_type))}


def basic_interval(draws: np.ndarray, estimate, level: float, low: float = -1.0, high: float = 1.0):
    """Basic bootstrap interval ``[2 t - q_(1-a/2), 2 t - q_(a/2)]`` (per column), clipped to [low, high]."""
    alpha = (1 - level) / 2
    q_lo, q_hi = np.quantile(draws, [alpha, 1 - alpha], axis=0)
    return np.clip(2 * np.asarray(estimate) - q_hi, low, high), np.clip(2 * np.asarray(estimate) - q_lo, low, high)


def divergence_of(species: list[str], divergence: dict, where: str) -> dict[str, float]:
    """Divergence per species, matched by name (``Pan troglodytes`` = ``chimpanzee``)."""
    by_name = {common_name(k): float(v) for k, v in divergence.items()}
    out = {}
    for s in species:
        if common_name(s) not in by_name:
            raise SclinbenchError(f"{where}: no divergence for species '{s}' (given for: {', '.join(map(str, divergence))}); "
                                  f"add '{s}: <value>' to it")
        out[s] = by_name[common_name(s)]
    return out


def structure_analysis(adata, *, dataset: str, reference: str, divergence: dict, divergence_unit: str = "",
                       label: str = "cell_type", species_column: str = "organism", min_cells: int = 10,
                       n_boot: int = 200, n_permutations: int = 20, level: float = 0.95, seed: int = 0,
                       batch: int = 25) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The structure analysis of one dataset: (per species x type table, summary table).

    Parameters
    ----------
    adata
        Standardized AnnData: raw counts in ``X``; obs ``label`` and ``species_column``.
    reference
        The reference species (an obs value of ``species_column``).
    divergence
        Species -> divergence from the reference (the reference's is not used).
    min_cells
        Species x type groups with fewer cells are left out (logged).
    n_boot, n_permutations
        Bootstrap draws (cells within each species x type) and label permutations (control).
    """
    where = f"structure analysis of dataset '{dataset}'"
    obs = adata.obs
    if species_column not in obs.columns:
        raise SclinbenchError(f"{where}: obs has no column '{species_column}'; the dataset needs several species")
    mask = labelled_cells(obs, label, where)
    X = sp.csr_matrix(adata.X)
    library = np.asarray(X.sum(axis=1)).ravel()
    if (library[mask] == 0).any():
        log.info("%s: %d labelled cells without counts set aside", where, int(((library == 0) & mask).sum()))
    mask &= library > 0
    species = obs[species_column].astype(str).to_numpy()
    labels = obs[label].astype(str).to_numpy()
    if reference not in set(species[mask]):
        raise SclinbenchError(f"{where}: reference species '{reference}' has no labelled cell "
                              f"(species: {', '.join(sorted(set(species[mask])))}); set 'reference' to one of them")
    others = sorted(set(species[mask]) - {reference})
    if not others:
        raise SclinbenchError(f"{where}: only the reference species '{reference}' is in the dataset; it needs two or more")
    div = divergence_of(others, divergence, f"{where} (analyses: structure: divergence)")

    groups = pd.Series(list(zip(species[mask], labels[mask]))).value_counts()
    small = groups[groups < min_cells]
    if len(small):
        log.info("%s: %d species x type groups with < %d cells left out: %s", where, len(small), min_cells,
                 "; ".join(f"{s}/{t} ({n})" for (s, t), n in small.items()))
    groups = groups[groups >= min_cells]
    keys = sorted(groups.index)
    ref_types = [t for s, t in keys if s == reference]
    if not ref_types:
        raise SclinbenchError(f"{where}: the reference '{reference}' has no cell type with >= {min_cells} cells; lower min_cells")
    code_of = {k: i for i, k in enumerate(keys)}
    row_codes = np.full(X.shape[0], -1)
    idx = np.flatnonzero(mask)
    row_codes[idx] = [code_of.get(k, -1) for k in zip(species[idx], labels[idx])]
    cells = np.flatnonzero(row_codes >= 0)
    F = normalize_total(X[cells], target_sum=1.0, dtype=np.float64)
    codes = row_codes[cells]
    ref_rows = np.array([code_of[(reference, t)] for t in ref_types])
    points = [(s, t) for s, t in keys if s != reference and t in ref_types]
    dropped = [(s, t) for s, t in keys if s != reference and t not in ref_types]
    if dropped:
        log.info("%s: types the reference lacks (no counterpart, left out): %s", where,
                 ", ".join(f"{s}/{t}" for s, t in dropped))
    if not points:
        raise SclinbenchError(f"{where}: no non-reference species shares a cell type with '{reference}'")
    pairs = np.array([(code_of[p], ref_types.index(p[1])) for p in points])
    own_type = pairs[:, 1]
    div_points = np.array([div[s] for s, _ in points])

    observed = _scores(pseudobulk_rankz(F, codes, len(keys)), pairs, ref_rows)
    obs_stats = _summary_stats(observed, div_points, own_type)

    rng = np.random.default_rng([seed, 3])
    members = [np.flatnonzero(codes == g) for g in range(len(keys))]
    boot_cos, boot_stats = [], []
    for start in range(0, n_boot, batch):
        b = min(batch, n_boot - start)
        blocks = np.empty((b, len(keys), F.shape[1]))
        for g, rows in enumerate(members):
            W = rng.multinomial(len(rows), np.full(len(rows), 1.0 / len(rows)), size=b) / len(rows)
            blocks[:, g, :] = np.asarray((F[rows].T @ W.T).T)
        R = _rankz_dense(blocks.reshape(b * len(keys), -1)).reshape(b, len(keys), -1)
        for r in R:
            s = _scores(r, pairs, ref_rows)
            boot_cos.append(s["cosine"])
            boot_stats.append(_summary_stats(s, div_points, own_type))
    perm_scores, perm_stats = [], []
    for _ in range(n_permutations):
        permuted = codes.copy()
        for sp_name in set(species[cells]):
            rows = np.flatnonzero(species[cells] == sp_name)
            permuted[rows] = codes[rows][rng.permutation(len(rows))]
        s = _scores(pseudobulk_rankz(F, permuted, len(keys)), pairs, ref_rows)
        perm_scores.append(s)
        perm_stats.append(_summary_stats(s, div_points, own_type))

    alpha = (1 - level) / 2
    boot_cos = np.array(boot_cos) if boot_cos else np.empty((0, len(points)))
    lo, hi = (basic_interval(boot_cos, observed["cosine"], level) if len(boot_cos) >= 3
              else (np.full(len(points), np.nan),) * 2)
    bias = boot_cos.mean(axis=0) - observed["cosine"] if len(boot_cos) else np.full(len(points), np.nan)
    n_ref_cells = {t: int(groups[(reference, t)]) for t in ref_types}
    table = pd.DataFrame({
        "dataset": dataset, "species": [s for s, _ in points], "cell_type": [t for _, t in points],
        "reference": reference, "divergence": div_points, "divergence_unit": divergence_unit,
        "n_cells": [int(groups[p]) for p in points], "n_cells_reference": [n_ref_cells[t] for _, t in points],
        "n_genes": F.shape[1], "cosine": observed["cosine"], "ci_low": lo, "ci_high": hi, "bootstrap_bias": bias,
        "cosine_other": observed["cosine_other"], "specificity": observed["specificity"],
        "nearest_reference_type": [ref_types[i] for i in observed["nearest"]],
        "matched": observed["nearest"] == own_type,
        "control_cosine": np.mean([s["cosine"] for s in perm_scores], axis=0) if perm_scores else np.nan,
        "control_specificity": np.mean([s["specificity"] for s in perm_scores], axis=0) if perm_scores else np.nan,
        "n_boot": n_boot, "n_permutations": n_permutations,
    })[STRUCTURE_COLUMNS]

    rows = []
    n_species = len({s for s, _ in points})
    for stat in STATISTICS:
        draws = np.array([d[stat] for d in boot_stats], dtype=float)
        draws = draws[np.isfinite(draws)]
        p = np.nan
        if stat.startswith("spearman") and np.isfinite(obs_stats[stat]):
            y = observed["cosine"] if stat == "spearman_r_cosine" else observed["specificity"]
            p = float(stats.spearmanr(div_points, y).pvalue)
        enough = len(draws) >= 3 and len(points) >= 3 and np.isfinite(obs_stats[stat])
        lo_s, hi_s = (basic_interval(draws, obs_stats[stat], level, *((0.0, 1.0) if stat == "match_rate" else (-1.0, 1.0)))
                      if enough else (np.nan, np.nan))
        rows.append({"statistic": stat, "setting": "observed", "value": obs_stats[stat],
                     "ci_low": float(lo_s), "ci_high": float(hi_s),
                     "bootstrap_bias": float(draws.mean() - obs_stats[stat]) if enough else np.nan, "p_value": p,
                     "n_draws": len(draws), "unit": "cells within each species x type",
                     "interval": f"basic bootstrap ({level:.0%}) over cells within each species x type"
                     if enough else "too few units for an interval"})
        pdraws = np.array([d[stat] for d in perm_stats], dtype=float)
        pdraws = pdraws[np.isfinite(pdraws)]
        penough = len(pdraws) >= 3
        rows.append({"statistic": stat, "setting": "control: labels permuted within species",
                     "value": float(pdraws.mean()) if len(pdraws) else np.nan,
                     "ci_low": np.quantile(pdraws, alpha) if penough else np.nan,
                     "ci_high": np.quantile(pdraws, 1 - alpha) if penough else np.nan,
                     "bootstrap_bias": np.nan, "p_value": np.nan,
                     "n_draws": len(pdraws), "unit": "label permutations",
                     "interval": f"mean and {level:.0%} range over permutations" if penough
                     else "too few units for an interval"})
    summary = pd.DataFrame(rows).assign(dataset=dataset, n_points=len(points), n_species=n_species,
                                        n_genes=F.shape[1])[SPEARMAN_COLUMNS]
    log.info("%s: %d points (%d species, %d genes): Spearman r(cosine, divergence) = %.3f, specificity %.3f "
             "(control %.3f), match rate %.2f (control %.2f)", where, len(points), n_species, F.shape[1],
             obs_stats["spearman_r_cosine"], obs_stats["mean_specificity"],
             np.mean([d["mean_specificity"] for d in perm_stats]) if perm_stats else np.nan,
             obs_stats["match_rate"], np.mean([d["match_rate"] for d in perm_stats]) if perm_stats else np.nan)
    return table, summary


def run_job(h5ad, dataset: str, params: dict, table_path, summary_path, seed: int = 0, level: float = 0.95) -> None:
    """The ``analysis_structure`` rule: one standardized dataset -> its two tables."""
    import anndata as ad

    from sclinbench.workflow.io import write_table

    table, summary = structure_analysis(ad.read_h5ad(h5ad), dataset=dataset, seed=seed, level=level, **params)
    write_table(table, table_path)
    write_table(summary, summary_path)
