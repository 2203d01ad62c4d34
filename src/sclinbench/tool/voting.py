"""Majority voting over an over-clustering of the query, as CellTypist's ``majority_voting=True``.

:func:`over_cluster` splits the query into many small clusters (more than there are cell types),
each cell type then spanning several clusters and each cluster holding mostly one type;
:func:`majority_vote` gives every cell the most frequent predicted label of its cluster (or
``Heterogeneous`` when that label holds less than ``min_prop`` of the cluster; 0 by default, as
CellTypist). The per-cell labels are kept beside it: voting smooths isolated errors but also
absorbs a rare cell type into its neighbours' label.

The clustering is scanpy's, on the query alone (it is unsupervised and never sees the reference):
an existing neighbour graph of the query (``obsp['connectivities']``) is used when present, as
CellTypist does; otherwise the raw counts are normalized to 10^4 per cell, log1p-transformed, cut
to the 2,500 most variable genes (scanpy ``seurat`` flavour), scaled (max 10), reduced to 50
principal components and joined in a 10-nearest-neighbour graph. Clusters are igraph's Leiden
(``sc.tl.leiden(flavor="igraph")``) at CellTypist's resolution schedule for the query's size
(:func:`default_resolution`).
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError

log = logging.getLogger("sclinbench.annotate")

HETEROGENEOUS = "Heterogeneous"
#: (fewer than N cells, Leiden resolution): CellTypist's over-clustering schedule.
RESOLUTIONS = ((5_000, 5.0), (20_000, 10.0), (40_000, 15.0), (100_000, 20.0), (200_000, 25.0))


def default_resolution(n_cells: int) -> float:
    return next((r for limit, r in RESOLUTIONS if n_cells < limit), 30.0)


def over_cluster(counts: sp.csr_matrix, query: ad.AnnData | None = None, resolution: float | None = None,
                 seed: int = 0) -> np.ndarray:
    """Leiden cluster (as strings) of every query cell (see the module docstring)."""
    import scanpy as sc

    n = counts.shape[0]
    resolution = default_resolution(n) if resolution is None else float(resolution)
    if query is not None and "connectivities" in query.obsp:
        work = ad.AnnData(obs=pd.DataFrame(index=query.obs_names.copy()))
        work.obsp["connectivities"] = query.obsp["connectivities"]
        how = "the query's own neighbour graph (obsp['connectivities'])"
        sc.tl.leiden(work, resolution=resolution, flavor="igraph", n_iterations=2, directed=False,
                     random_state=seed, adjacency=work.obsp["connectivities"])
    else:
        if n < 3:
            raise SclinbenchError(f"majority voting needs at least 3 query cells to cluster, the query has {n}")
        work = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32))
        sc.pp.normalize_total(work, target_sum=1e4)
        sc.pp.log1p(work)
        keep = np.asarray(work.X.getnnz(axis=0) > 0).ravel()
        work = work[:, keep].copy()
        n_top = min(2500, work.n_vars)
        if n_top < work.n_vars:
            sc.pp.highly_variable_genes(work, n_top_genes=n_top, flavor="seurat")
            work = work[:, work.var["highly_variable"].to_numpy()].copy()
        work.X = np.asarray(work.X.toarray(), dtype=np.float32)  # scaling centres the genes: dense (<= 2,500)
        sc.pp.scale(work, max_value=10)
        n_comps = int(min(50, work.n_obs - 1, work.n_vars - 1))
        sc.pp.pca(work, n_comps=n_comps, random_state=seed)
        sc.pp.neighbors(work, n_neighbors=min(10, n - 1), n_pcs=n_comps, random_state=seed)
        sc.tl.leiden(work, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
        how = f"log1p CP10k, {n_top} variable genes, scaled, {n_comps} PCs, 10-NN graph"
    clusters = work.obs["leiden"].astype(str).to_numpy()
    log.info("over-clustering: %d Leiden clusters at resolution %g on %s", np.unique(clusters).size, resolution, how)
    return clusters


def majority_vote(labels, clusters, min_prop: float = 0.0) -> np.ndarray:
    """The most frequent label of each cell's cluster (ties: the label first in sorted order)."""
    lab = pd.Series(np.asarray(labels, dtype=str))
    clu = pd.Series(np.asarray(clusters, dtype=str))
    votes = pd.crosstab(clu, lab)
    winner = votes.idxmax(axis=1)
    share = votes.max(axis=1) / votes.sum(axis=1)
    winner[share < min_prop] = HETEROGENEOUS
    return winner.reindex(clu.to_numpy()).to_numpy(dtype=object)


def vote(labels, counts: sp.csr_matrix, query: ad.AnnData, over_clustering: str | None = None,
         resolution: float | None = None, min_prop: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """``over_clustering`` and ``majority_voting`` columns for the query (an obs column of clusters
    when ``over_clustering`` names one, else :func:`over_cluster`)."""
    if over_clustering is not None:
        if over_clustering not in query.obs.columns:
            raise SclinbenchError(f"--over-clustering {over_clustering!r} is not an obs column of the query; its obs "
                                  f"columns are: {', '.join(map(str, query.obs.columns)) or 'none'}")
        clusters = query.obs[over_clustering].astype(str).to_numpy()
    else:
        clusters = over_cluster(counts, query, resolution, seed)
    mv = majority_vote(labels, clusters, min_prop)
    changed = int((mv != np.asarray(labels, dtype=str)).sum())
    log.info("majority voting over %d clusters: %d of %d cells (%.1f%%) take their cluster's label",
             np.unique(clusters).size, changed, len(mv), 100 * changed / max(len(mv), 1))
    return pd.DataFrame({"over_clustering": clusters, "majority_voting": mv}, index=query.obs_names)
