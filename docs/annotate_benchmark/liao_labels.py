"""Coarse lineage labels for the three Liao et al. 2020 lavage patients, and their benchmark units.

The files (10x HDF5 of raw counts, no cell-type labels) are read from the folder given to
``compare_celltypist.py --liao DIR`` at benchmark time only; nothing of the workflow or the tests
needs them. The labels are *derived*, not published: one documented rule applied to all patients
jointly, so that neither patient's reference or query sees a rule fitted on itself alone.

Rule (:func:`lineage_labels`), after QC (>= 200 genes per cell, as config/datasets.yaml's liao2020;
the viral feature ``nCoV`` dropped):

1. all cells of the three patients together: scanpy normalize_total (1e4), log1p, 2,000 highly
   variable genes (``seurat`` flavour, batch_key = patient), scale (max 10), PCA 30 (seed 0), a
   15-nearest-neighbour graph, igraph Leiden at resolution 1.0 (seed 0);
2. per lineage, ``sc.tl.score_genes`` of its canonical markers (:data:`MARKERS`, seed 0) per cell;
3. each cluster takes the lineage with the highest mean score over its cells; a cluster whose best
   mean score is below :data:`MIN_SCORE` is ``unresolved`` (kept, scored like any label).

Limitations: cluster-level labels from markers are coarse and partly circular (both tools learn
from the same expression that made the labels); a cluster mixing lineages gives all its cells one
label; B and plasma cells share markers; macrophages/monocytes and T/NK cells are merged on purpose
(see :data:`MARKERS`). Neutrophils are nearly absent from the mild patient C144 (2 cells), so a
C144 reference hardly knows them while the severe queries hold hundreds: that is the state shift.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

#: patient -> (file name, severity), as config/datasets.yaml's liao2020 entry.
PATIENTS = {"C144": ("GSM4339772_C144_filtered_feature_bc_matrix.h5", "mild"),
            "C146": ("GSM4339774_C146_filtered_feature_bc_matrix.h5", "severe"),
            "C149": ("GSM4475052_C149_filtered_feature_bc_matrix.h5", "severe")}
#: Canonical markers per coarse lineage (gene symbols). Macrophages and monocytes are one lineage, and
#: T and NK cells another: with them apart, clusters fell between the two (mixed T/NK scores; the
#: monocyte-derived macrophages of severe patients, Liao et al.'s finding, between both), and
#: the split would be the rule's, not the data's.
MARKERS = {
    "macrophage/monocyte": ["CD68", "MARCO", "FABP4", "C1QA", "C1QB", "APOE", "CD14", "FCN1", "VCAN"],
    "T/NK cell": ["CD3E", "CD3D", "CD2", "IL7R", "KLRF1", "KLRD1", "NKG7", "PRF1"],
    "B cell": ["MS4A1", "CD79A", "CD19", "BANK1"],
    "plasma cell": ["JCHAIN", "MZB1", "IGHG1", "XBP1"],
    "epithelial": ["KRT18", "EPCAM", "KRT19", "TPPP3"],
    "neutrophil": ["FCGR3B", "CXCR2", "CSF3R"],
    "dendritic cell": ["CD1C", "FCER1A", "CLEC10A", "LILRA4"],
    "mast cell": ["TPSAB1", "CPA3", "KIT"],
}
MIN_SCORE = 0.1
#: (reference patient, query patient): mild -> severe (the state shift) and back.
PAIRS = [("C144", "C146"), ("C144", "C149"), ("C146", "C144"), ("C149", "C144")]


def read_patients(folder: Path) -> ad.AnnData:
    parts = []
    for patient, (name, severity) in PATIENTS.items():
        a = sc.read_10x_h5(folder / name, gex_only=True)
        a = a[:, a.var_names != "nCoV"].copy()
        a.var_names_make_unique()
        a.obs_names = [f"{patient}_{b}" for b in a.obs_names]
        a.obs["donor_id"], a.obs["severity"] = patient, severity
        parts.append(a)
    adata = ad.concat(parts, join="inner", merge="same")
    sc.pp.filter_cells(adata, min_genes=200)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return adata


def lineage_labels(adata: ad.AnnData) -> tuple[pd.Series, pd.DataFrame]:
    """``(label per cell, cluster table with every lineage's mean score)`` by the module's rule."""
    x = adata.copy()
    sc.pp.normalize_total(x, target_sum=1e4)
    sc.pp.log1p(x)
    sc.pp.highly_variable_genes(x, n_top_genes=2000, batch_key="donor_id")
    h = x[:, x.var["highly_variable"]].copy()
    sc.pp.scale(h, max_value=10)
    sc.pp.pca(h, n_comps=30, random_state=0)
    sc.pp.neighbors(h, n_neighbors=15, random_state=0)
    sc.tl.leiden(h, resolution=1.0, random_state=0, flavor="igraph", n_iterations=2, directed=False)
    for lineage, genes in MARKERS.items():
        sc.tl.score_genes(x, [g for g in genes if g in x.var_names], score_name=lineage, random_state=0)
    scores = x.obs[list(MARKERS)].groupby(h.obs["leiden"].to_numpy(), observed=True).mean()
    best = scores.idxmax(axis=1).where(scores.max(axis=1) >= MIN_SCORE, "unresolved")
    table = scores.round(3).assign(label=best, n_cells=h.obs["leiden"].value_counts().reindex(scores.index))
    labels = pd.Series(best.loc[h.obs["leiden"].to_numpy()].to_numpy(), index=adata.obs_names, name="cell_type")
    return labels, table


def liao_cases(work: Path, folder: Path) -> list[dict]:
    adata = read_patients(folder)
    labels, table = lineage_labels(adata)
    d = work / "liao2020"
    d.mkdir(parents=True, exist_ok=True)
    table.to_csv(d / "clusters.tsv", sep="\t")
    pd.crosstab(labels, adata.obs["donor_id"]).to_csv(d / "labels_per_patient.tsv", sep="\t")
    out = ad.AnnData(X=adata.X, obs=pd.DataFrame({"cell_type": labels.to_numpy(), "donor_id": adata.obs["donor_id"].astype(str).to_numpy()},
                                                   index=adata.obs_names),
                     var=pd.DataFrame({"gene_symbol": adata.var_names.astype(str)}, index=adata.var["gene_ids"].astype(str).to_numpy()))
    cases = []
    for ref_p, q_p in PAIRS:
        sub = d / f"{ref_p}_to_{q_p}"
        sub.mkdir(parents=True, exist_ok=True)
        ref, query = out[out.obs["donor_id"] == ref_p].copy(), out[out.obs["donor_id"] == q_p].copy()
        ref.write_h5ad(sub / "reference.h5ad")
        query.write_h5ad(sub / "query.h5ad")
        cases.append({"group": "liao2020_patients", "unit": f"{ref_p}->{q_p}",
                      "reference": str(sub / "reference.h5ad"), "query": str(sub / "query.h5ad")})
    return cases


if __name__ == "__main__":  # print the cluster table and the labels per patient
    import sys

    a = read_patients(Path(sys.argv[1]))
    lab, tab = lineage_labels(a)
    print(tab.to_string())
    print(pd.crosstab(lab, a.obs["donor_id"]).to_string())
