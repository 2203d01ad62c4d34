"""Streamed standardization of one h5ad (sclinbench.data.standardize_h5ad): the same file, checks
and messages as the in-memory path (read_raw + standardize), with the counts read in blocks."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sclinbench import data
from sclinbench.data.datasets import standardized_dataset
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import write_h5ad


def raw_file(path: Path, n_cells: int = 300, n_genes: int = 40, seed: int = 0, dtype=np.float32,
             stored_zeros: bool = True) -> Path:
    """A raw h5ad: counts with stored zeros, duplicated gene ids, a feature gene, donors, labels
    with a rare type and unlabelled cells, an obsm array."""
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.6, size=(n_cells, n_genes)).astype(dtype)
    dense[rng.random(n_cells) < 0.05] = 0  # empty cells
    dense[:, 5] = 0  # an empty gene
    X = sp.csr_matrix(dense)
    if stored_zeros:  # explicit zeros in the stored values, as some writers leave them
        X.data[rng.random(X.nnz) < 0.05] = 0
    genes = [f"ENSG{j:011d}" for j in range(n_genes)]
    genes[7] = genes[3]  # a duplicated gene id: summed
    types = rng.choice(["T", "B", "NK", "rare"], size=n_cells, p=[0.5, 0.3, 0.18, 0.02]).astype(object)
    types[rng.random(n_cells) < 0.05] = "unknown"
    obs = pd.DataFrame({"celltype": pd.Categorical(types),
                        "donor": pd.Categorical(rng.choice(["d1", "d2", "d3"], size=n_cells)),
                        "batch": rng.integers(0, 3, size=n_cells)},
                       index=[f"cell{i % (n_cells - 5)}" for i in range(n_cells)])  # some repeated names
    var = pd.DataFrame({"symbol": [f"S{j}" for j in range(n_genes)]}, index=pd.Index(genes))
    adata = ad.AnnData(X=X, obs=obs, var=var, obsm={"X_pca": rng.normal(size=(n_cells, 3))})
    adata.write_h5ad(path)
    return path


ENTRY = {"source": "local", "format": "h5ad", "organism": "Homo sapiens", "gene_id": "ensembl",
         "var_columns": {"gene_symbol": "symbol"},
         "columns": {"cell_type": "celltype", "donor_id": "donor"}}
QC = {"min_genes": 3, "min_counts": 4, "min_cells": 2, "min_cells_per_label": 10}


def in_memory(path: Path, entry: dict, qc: dict, out: Path) -> ad.AnnData:
    entry = {**entry, "files": [{"path": str(path)}]}
    raw = data.read_raw(path, "h5ad", counts=entry.get("counts", "X"), checksum=False, local=True,
                        entry_name="toy", rows=data.ood_row_filter(entry),
                        file_obs=[f.get("obs", {}) for f in entry["files"]])
    raw.uns["sclinbench_raw"].update({"sha256": "abc", "verified": "local"})
    std = data.standardize(raw, entry, qc, source=str(path), name="toy")
    write_h5ad(std, out)
    return ad.read_h5ad(out)


def streamed(path: Path, entry: dict, qc: dict, out: Path, block: int = 97) -> ad.AnnData:
    entry = {**entry, "files": [{"path": str(path)}]}
    got = data.standardize_h5ad(path, entry, qc, out, source=str(path), name="toy", local=True,
                                raw_info={"sha256": "abc", "verified": "local"}, block=block)
    assert got is not None and got.X is None
    return ad.read_h5ad(out)


def assert_same(a: ad.AnnData, b: ad.AnnData) -> None:
    assert a.shape == b.shape
    assert sp.issparse(a.X) and sp.issparse(b.X) and a.X.dtype == b.X.dtype == np.float32
    A, B = sp.csr_matrix(a.X), sp.csr_matrix(b.X)
    assert A.has_canonical_format and B.has_canonical_format
    np.testing.assert_array_equal(A.indptr, B.indptr)
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_array_equal(A.data, B.data)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert sorted(a.obsm) == sorted(b.obsm)
    for key in a.obsm:
        np.testing.assert_array_equal(a.obsm[key], b.obsm[key])
    assert dict(a.uns["sclinbench"]) == dict(b.uns["sclinbench"])


@pytest.mark.parametrize("case", ["plain", "qc", "feature", "filters", "ood_only", "max_cells", "raw_int",
                                  "gene_counts"])
def test_streamed_file_equals_in_memory_file(tmp_path, case):
    entry, qc = dict(ENTRY), {}
    dtype = np.float32
    if case == "qc":
        qc = QC
    elif case == "feature":
        entry["condition_from_feature"] = {"feature": "S11", "min_count": 1}
        qc = QC
    elif case == "filters":
        entry["obs_filter"] = {"batch": [0, 1]}
        entry["ood_donors"] = ["d2"]
        qc = {"min_counts": 2}
    elif case == "ood_only":
        entry.update(ood_donors=["d[13]"], ood_only=True)
        qc = QC
    elif case == "max_cells":
        entry["max_cells"] = 101
        qc = QC
    elif case == "raw_int":
        dtype = np.int64
    elif case == "gene_counts":  # the paper's gene filter (total count), after the cell filters
        qc = {**QC, "min_gene_counts": 165}
    path = raw_file(tmp_path / "raw.h5ad", dtype=dtype)
    a = in_memory(path, entry, qc, tmp_path / "memory.h5ad")
    b = streamed(path, entry, qc, tmp_path / "streamed.h5ad")
    assert a.n_obs > 50
    assert_same(a, b)
    if case == "gene_counts":
        assert "genes with < 165 counts in total" in a.uns["sclinbench"]["qc_log"]
        assert a.n_vars < in_memory(path, entry, QC, tmp_path / "no_gene_filter.h5ad").n_vars
        assert np.asarray(a.X.sum(axis=0)).min() >= 165
    if case == "max_cells":
        assert a.n_obs == 101
        record = json.loads(a.uns["sclinbench"]["subsample"])
        assert record["max_cells"] == 101 and record["n_cells_after"] == 101


def test_blocks_of_any_size_give_the_same_file(tmp_path):
    path = raw_file(tmp_path / "raw.h5ad")
    files = [streamed(path, ENTRY, QC, tmp_path / f"s{b}.h5ad", block=b) for b in (1, 50, 10**9)]
    for other in files[1:]:
        assert_same(files[0], other)


def test_non_integer_counts_are_refused_with_the_readers_message(tmp_path):
    path = tmp_path / "lognorm.h5ad"
    X = sp.random(60, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    X.data = np.log1p(X.data * 10)
    ad.AnnData(X=X).write_h5ad(path)
    entry = {"source": "local", "gene_id": "symbol", "files": [{"path": str(path)}]}
    with pytest.raises(SclinbenchError, match=r"^" + str(path).replace(".", r"\.") +
                       r" \(X\) holds non-integer values .*point `counts:`"):
        data.standardize_h5ad(path, entry, {}, tmp_path / "out.h5ad", name="toy", local=True, block=7)
    assert not (tmp_path / "out.h5ad").exists()


def test_a_file_that_cannot_be_streamed_takes_the_in_memory_path(tmp_path):
    path = tmp_path / "dense.h5ad"
    ad.AnnData(X=np.ones((5, 3), dtype=np.float32)).write_h5ad(path)  # dense X
    entry = {"source": "local", "gene_id": "symbol", "files": [{"path": str(path)}]}
    assert data.standardize_h5ad(path, entry, {}, tmp_path / "out.h5ad", name="toy") is None
    got = standardized_dataset("toy", entry, [str(path)], {}, out=str(tmp_path / "out.h5ad"))
    assert got.X is not None and got.shape == (5, 3)  # read in memory; the caller writes it


def test_standardized_dataset_streams_a_local_h5ad(tmp_path):
    path = raw_file(tmp_path / "raw.h5ad")
    entry = {**ENTRY, "files": [{"path": str(path)}]}
    out = tmp_path / "std.h5ad"
    got = standardized_dataset("toy", entry, [str(path)], QC, out=str(out))
    assert got.X is None and out.exists()
    back = ad.read_h5ad(out)
    assert back.shape == got.shape and back.uns["sclinbench"]["verified"] == "local"
    h5 = data.h5ad_shape(out)
    assert h5 == (back.n_obs, back.n_vars, back.X.nnz)


def test_large_matrices_are_written_uncompressed(tmp_path, monkeypatch):
    import h5py

    from sclinbench.workflow import io

    path = raw_file(tmp_path / "raw.h5ad")
    monkeypatch.setattr(io, "COMPRESS_BELOW_NNZ", 10)
    streamed(path, ENTRY, {}, tmp_path / "big.h5ad")
    with h5py.File(tmp_path / "big.h5ad") as f:
        assert f["X/data"].compression is None
    monkeypatch.setattr(io, "COMPRESS_BELOW_NNZ", 10**9)
    streamed(path, ENTRY, {}, tmp_path / "small.h5ad")
    with h5py.File(tmp_path / "small.h5ad") as f:
        assert f["X/data"].compression == "gzip"


def test_subsample_is_stratified_seeded_and_exact():
    rng = np.random.default_rng(1)
    labels = rng.choice(["a", "b", "c"], size=1000, p=[0.7, 0.2, 0.1]).astype(object)
    labels[:30] = None
    adata = ad.AnnData(obs=pd.DataFrame({"cell_type": pd.Categorical(labels)},
                                        index=[f"c{i}" for i in range(1000)]))
    sub, record = data.subsample_cells(adata, 200, seed=3)
    again, _ = data.subsample_cells(adata, 200, seed=3)
    other, _ = data.subsample_cells(adata, 200, seed=4)
    assert sub.n_obs == 200 and record["n_cells_before"] == 1000
    assert list(sub.obs_names) == list(again.obs_names) != list(other.obs_names)
    before = adata.obs["cell_type"].astype(str).value_counts()
    after = sub.obs["cell_type"].astype(str).value_counts()
    for label, n in before.items():
        assert abs(after[label] - 200 * n / 1000) < 1  # proportional share, rounded
    positions = adata.obs_names.get_indexer(sub.obs_names)
    assert (np.diff(positions) > 0).all()  # file order kept
    assert data.subsample_cells(adata, 5000)[1] is None
