"""Manifold linearity (Souza & Mehta 2026, Sec. VII).

Per dataset and draw: a seeded subsample of ``n_cells`` cells from its ``n_types`` most frequent
labelled cell types (the paper: human spermatogenesis, 500 cells, 7 types), represented as raw
counts (the paper's choice), rankz and log1p(CP10k) over all genes; for each neighbourhood size
``k``, the Pearson correlation between the cells' Euclidean distances and their geodesic
distances on the kNN graph (scikit-learn's :class:`~sklearn.manifold.Isomap`, ``dist_matrix_``).
A correlation near 1 says the geodesics follow straight lines: the manifold is close to linear.

Repeated draws (a new subsample each, seed ``[seed, draw]``) give the spread. The control, drawn
on the same cells: every gene's values permuted across the cells independently, which keeps each
gene's distribution and removes all structure between genes -- a structureless cloud, the r a
dataset with no manifold at all would give at the same size and sparsity.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial.distance import pdist, squareform

from sclinbench.analyses.common import labelled_cells
from sclinbench.errors import SclinbenchError
from sclinbench.represent.normalize import shifted_log
from sclinbench.represent.rank import rankz

log = logging.getLogger("sclinbench.analyses")

MANIFOLD_COLUMNS = ["dataset", "representation", "setting", "k", "draw", "pearson_r", "n_cells", "n_types",
                    "n_genes", "n_graph_components"]
MANIFOLD_SUMMARY_COLUMNS = ["dataset", "representation", "setting", "k", "mean_r", "ci_low", "ci_high",
                            "min_r", "max_r", "n_draws", "interval"]
REPRESENTATIONS = ("counts", "rankz", "log1p")
SETTINGS = ("observed", "control: genes permuted across cells")


def represent(X: sp.csr_matrix, name: str) -> np.ndarray:
    """Dense cells x genes matrix of one representation of raw counts ``X``."""
    if name == "counts":
        return np.asarray(X.toarray(), dtype=np.float64)
    if name == "rankz":
        return rankz(X, dtype=np.float64).toarray()
    if name == "log1p":
        return np.asarray(shifted_log(X, target_sum=1e4, dtype=np.float64).toarray())
    raise SclinbenchError(f"analyses: manifold: representations: unknown '{name}'; choose from {', '.join(REPRESENTATIONS)}")


def geodesic_pearson(Y: np.ndarray, k: int, distances: np.ndarray | None = None) -> tuple[float, int]:
    """(Pearson r of Euclidean vs Isomap geodesic distances over all cell pairs, kNN graph components).

    ``distances``: the square Euclidean distance matrix of ``Y`` when already computed (Isomap then
    takes it precomputed: the same graph, one distance computation for every k).
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.manifold import Isomap
    from sklearn.neighbors import kneighbors_graph

    D = squareform(pdist(Y)) if distances is None else distances
    n_comp = connected_components(kneighbors_graph(D, k, mode="connectivity", metric="precomputed"),
                                  directed=False)[0]
    with warnings.catch_warnings():   # a disconnected graph is joined by Isomap (warned): counted above
        warnings.simplefilter("ignore")
        iso = Isomap(n_neighbors=k, n_components=2, metric="precomputed").fit(D)
    iu = np.triu_indices(D.shape[0], 1)
    return float(np.corrcoef(D[iu], iso.dist_matrix_[iu])[0, 1]), int(n_comp)


def subsample(labels: np.ndarray, n_cells: int, n_types: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_cells`` cells drawn without replacement from the ``n_types`` most frequent labels."""
    counts = pd.Series(labels).value_counts(sort=True)
    keep = counts.index[:n_types]
    pool = np.flatnonzero(np.isin(labels, keep))
    return np.sort(rng.choice(pool, size=min(n_cells, pool.size), replace=False))


def manifold_linearity(adata, *, dataset: str, n_cells: int = 500, n_types: int = 7, k=(5, 10, 15, 30, 45),
                       representations=REPRESENTATIONS, n_draws: int = 5, seed: int = 0, label: str = "cell_type",
                       level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifold linearity of one dataset: (one row per representation x setting x k x draw, summary)."""
    where = f"manifold analysis of dataset '{dataset}'"
    mask = labelled_cells(adata.obs, label, where)
    X = sp.csr_matrix(adata.X)
    library = np.asarray(X.sum(axis=1)).ravel()
    mask &= library > 0
    idx_all = np.flatnonzero(mask)
    labels = adata.obs[label].astype(str).to_numpy()[idx_all]
    ks = sorted(int(v) for v in k)
    rows = []
    for draw in range(n_draws):
        rng = np.random.default_rng([seed, 7, draw])
        pick = idx_all[subsample(labels, n_cells, n_types, rng)]
        Xs = X[pick]
        n_types_drawn = pd.Series(adata.obs[label].astype(str).to_numpy()[pick]).nunique()
        valid = [v for v in ks if v < len(pick)]
        if len(valid) < len(ks):
            log.info("%s: k >= the %d cells drawn skipped: %s", where, len(pick), sorted(set(ks) - set(valid)))
        # the control: each gene's values permuted across the drawn cells (then represented)
        dense = Xs.toarray()
        shuffled = np.take_along_axis(dense, rng.random(dense.shape).argsort(axis=0), axis=0)
        shuffled_csr = sp.csr_matrix(shuffled)
        keep_control = np.asarray(shuffled_csr.sum(axis=1)).ravel() > 0
        for name in representations:
            for setting, M in ((SETTINGS[0], Xs), (SETTINGS[1], shuffled_csr[keep_control])):
                Y = represent(sp.csr_matrix(M), name)
                D = squareform(pdist(Y))
                for kk in valid:
                    if kk >= Y.shape[0]:
                        continue
                    r, comps = geodesic_pearson(Y, kk, D)
                    rows.append({"dataset": dataset, "representation": name, "setting": setting, "k": kk,
                                 "draw": draw, "pearson_r": r, "n_cells": Y.shape[0], "n_types": n_types_drawn,
                                 "n_genes": Y.shape[1], "n_graph_components": comps})
    table = pd.DataFrame(rows, columns=MANIFOLD_COLUMNS)
    if table.empty:
        raise SclinbenchError(f"{where}: no k below the number of cells drawn; lower analyses: manifold: k")
    return table, summarize(table, level)


def summarize(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean r over draws with the percentile range of the draws (no interval from fewer than 3 draws)."""
    alpha = (1 - level) / 2
    out = []
    for key, g in table.groupby(["dataset", "representation", "setting", "k"], sort=False):
        r = g["pearson_r"].to_numpy()
        enough = len(r) >= 3
        out.append(dict(zip(["dataset", "representation", "setting", "k"], key), mean_r=r.mean(),
                        ci_low=np.quantile(r, alpha) if enough else np.nan,
                        ci_high=np.quantile(r, 1 - alpha) if enough else np.nan, min_r=r.min(), max_r=r.max(),
                        n_draws=len(r), interval=f"{level:.0%} range over independent subsamples" if enough
                        else "too few units for an interval"))
    return pd.DataFrame(out, columns=MANIFOLD_SUMMARY_COLUMNS)


def run_job(h5ad, dataset: str, params: dict, table_path, summary_path, seed: int = 0, level: float = 0.95) -> None:
    """The ``analysis_manifold`` rule: one standardized dataset -> its two tables."""
    import anndata as ad

    from sclinbench.workflow.io import write_table

    table, summary = manifold_linearity(ad.read_h5ad(h5ad), dataset=dataset, seed=seed, level=level, **params)
    write_table(table, table_path)
    write_table(summary, summary_path)
