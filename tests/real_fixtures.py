"""Shared builders of the tests' real-data fixtures (tests/data: pbmc68k_reduced, the liao2020 lavage subset)."""
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
LIAO_PATIENTS = sorted((ROOT / "tests/data/liao2020/patients").glob("C*_subset_filtered_feature_bc_matrix.h5"))


def stratified_query_mask(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """True for a random half of the cells of every label (the query half; the rest is the reference)."""
    rng = np.random.default_rng(seed)
    query = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        query[rng.choice(idx, size=idx.size // 2, replace=False)] = True
    return query


def liao_standardized():
    """Three COVID-19 BALF patients (real 10x data), donors from the file names, standardized as
    config/datasets.yaml's liao2020 entry says (QC: >= 20 genes)."""
    from sclinbench import data

    entry = yaml.safe_load((ROOT / "config/datasets.yaml").read_text())["liao2020"]
    raw = data.read_raw([str(p) for p in LIAO_PATIENTS], "10x_h5",
                        file_obs=[{"donor_id": p.name.split("_")[0]} for p in LIAO_PATIENTS])
    return data.standardize(raw, {**entry, "qc": {"min_genes": 20}}, {}, source="fixture", name="liao2020")


def write_pbmc_halves(folder: Path, ref_name: str, query_name: str, obs_columns: list[str]) -> None:
    """Stratified halves (:func:`stratified_query_mask`) of scanpy's real pbmc68k_reduced counts
    (CSR float32 in X, obs ``obs_columns``), written as ``folder/ref_name`` and ``folder/query_name``."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from sclinbench.data import load_bundled

    a = load_bundled("pbmc68k_reduced")
    query = stratified_query_mask(a.obs["bulk_labels"].astype(str).to_numpy())
    b = ad.AnnData(X=sp.csr_matrix(a.X, dtype=np.float32), obs=a.obs[obs_columns].copy(),
                   var=pd.DataFrame(index=a.var_names.copy()))
    b[~query].copy().write_h5ad(folder / ref_name)
    b[query].copy().write_h5ad(folder / query_name)
