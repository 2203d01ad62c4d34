"""sclinbench.data: reading, integer-count checks, standardization; the dataset registry."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import yaml

from sclinbench import data
from sclinbench.data.datasets import standardized_dataset
from sclinbench.errors import SclinbenchError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "liao2020" / "C146_subset_filtered_feature_bc_matrix.h5"
REGISTRY = ROOT / "config" / "datasets.yaml"
SCHEMA = ROOT / "config" / "datasets.schema.yaml"


def registry() -> dict:
    with open(REGISTRY) as fh:
        return yaml.safe_load(fh)


def fixture_truth():
    """Counts of the fixture read straight from the HDF5 arrays (independent of scanpy)."""
    with h5py.File(FIXTURE, "r") as f:
        m = f["matrix"]
        n_genes, n_cells = m["shape"][:]
        X = sp.csr_matrix((m["data"][:], m["indices"][:], m["indptr"][:]), shape=(n_cells, n_genes))
        ids = m["features"]["id"][:].astype(str)
        barcodes = m["barcodes"][:].astype(str)
    return X, ids, barcodes


def small_adata(counts, genes=None, **obs_columns) -> ad.AnnData:
    counts = np.asarray(counts)
    genes = genes or [f"G{j}" for j in range(counts.shape[1])]
    obs = pd.DataFrame(obs_columns, index=[f"c{i}" for i in range(counts.shape[0])])
    return ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes))


# ---------------------------------------------------------------------------- integer counts


def test_check_integer_counts_accepts_integer_valued_floats_and_ints():
    data.check_integer_counts(sp.csr_matrix(np.array([[0, 2.0], [5.0, 0]], dtype=np.float32)), "m")
    data.check_integer_counts(np.array([[0, 3], [1, 0]], dtype=np.int64), "m")


def test_log_normalized_matrix_is_refused_naming_it():
    counts = np.array([[0, 2, 3], [4, 0, 1]], dtype=float)
    lognorm = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    with pytest.raises(SclinbenchError) as err:
        data.check_integer_counts(sp.csr_matrix(lognorm), "pbmc.h5ad (X)")
    message = str(err.value)
    assert "pbmc.h5ad (X)" in message and "non-integer" in message
    assert "counts:" in message and "raw.X" in message and "\n" not in message


def test_negative_values_are_refused():
    with pytest.raises(SclinbenchError, match="negative"):
        data.check_integer_counts(np.array([[1.0, -2.0]]), "scaled")
    with pytest.raises(SclinbenchError, match="negative"):
        data.check_integer_counts(np.array([[1, -2]]), "scaled ints")


def test_recover_counts_from_lognorm_hand_example():
    counts = np.array([[1, 0, 3], [2, 2, 0]], dtype=float)
    totals = np.array([10.0, 5.0])  # library sizes include genes not in the matrix
    lognorm = sp.csr_matrix(np.log1p(counts / totals[:, None] * 1e4).astype(np.float32))
    recovered = data.recover_counts_from_lognorm(lognorm, totals)
    assert sp.isspmatrix_csr(recovered) and recovered.dtype == np.int32
    np.testing.assert_array_equal(recovered.toarray(), counts)
    with pytest.raises(SclinbenchError, match="library sizes or scale"):
        data.recover_counts_from_lognorm(lognorm, totals * 1.37)


def test_pbmc68k_counts_are_recovered_as_integers():
    adata = data.load_bundled("pbmc68k_reduced")
    assert adata.shape == (700, 765)
    assert sp.isspmatrix_csr(adata.X) and np.issubdtype(adata.X.dtype, np.integer)
    assert adata.X.data.min() >= 1
    # the recovered counts re-normalize to scanpy's stored raw.X
    import scanpy as sc

    raw = sc.datasets.pbmc68k_reduced().raw.X.toarray()
    renorm = np.log1p(adata.X.toarray() / adata.obs["n_counts"].to_numpy()[:, None] * 1e4)
    assert np.abs(renorm - raw).max() < 1e-3
    assert "bulk_labels" in adata.obs.columns and "X_umap" in adata.obsm

    std = data.standardize(adata, registry()["pbmc68k"], {"min_counts": 1}, source="bundled", name="pbmc68k")
    assert std.shape == (700, 765) and std.X.dtype == np.float32
    assert (std.obs["cell_type"].astype(str) == adata.obs["bulk_labels"].astype(str)).all()
    assert set(std.obs["donor_id"]) == {"unknown"} and set(std.obs["organism"]) == {"Homo sapiens"}
    assert std.uns["sclinbench"]["sha256"] and std.uns["sclinbench"]["dataset"] == "pbmc68k"


def test_unknown_bundled_name_lists_the_available_ones():
    with pytest.raises(SclinbenchError, match="pbmc68k_reduced"):
        data.load_bundled("pbmc3k")


# ---------------------------------------------------------------------------- reading files


def test_10x_fixture_reads_with_the_viral_feature():
    truth, ids, barcodes = fixture_truth()
    adata = data.read_raw(FIXTURE, "10x_h5")
    assert adata.shape == truth.shape == (310, 2000)
    assert list(adata.var_names) == list(ids) and "nCoV" in adata.var_names
    assert adata.var.loc["nCoV", "gene_symbols"] == "nCoV"
    assert list(adata.obs_names) == list(barcodes)
    assert (adata.X != truth).nnz == 0
    assert len(adata.uns["sclinbench_raw"]["sha256"]) == 64


def test_condition_from_viral_counts_gives_infected_cells():
    truth, ids, _ = fixture_truth()
    viral = truth[:, list(ids).index("nCoV")].toarray().ravel()
    assert (viral > 0).sum() == 101 and viral.sum() == 239  # see PROVENANCE.md
    entry = copy.deepcopy(registry()["liao2020"])
    entry["qc"] = {"min_genes": 0}
    adata = data.read_raw(FIXTURE, "10x_h5", file_obs=[{"donor_id": "C146", "severity": "severe"}])
    std = data.standardize(adata, entry, {}, source=str(FIXTURE), name="liao2020")
    assert std.n_obs == 310
    assert (std.obs["condition"] == "infected").sum() == 101
    assert set(std.obs["condition"]) == {"infected", "uninfected"}
    np.testing.assert_array_equal(std.obs["nCoV_counts"].to_numpy(), viral)
    assert "nCoV" not in std.var_names and std.n_vars == 1999  # viral feature dropped from X
    assert set(std.obs["donor_id"]) == {"C146"} and set(std.obs["severity"]) == {"severe"}
    assert std.var.loc["ENSG00000187608", "gene_symbol"] == "ISG15"

    entry["condition_from_feature"] = {**entry["condition_from_feature"], "min_count": 2, "drop_feature": False}
    std2 = data.standardize(adata, entry, {}, name="liao2020")
    assert (std2.obs["condition"] == "infected").sum() == (viral >= 2).sum() < 101
    assert "nCoV" in std2.var_names


def test_min_genes_qc_on_the_fixture_matches_a_hand_count():
    truth, ids, _ = fixture_truth()
    adata = data.read_raw(FIXTURE, "10x_h5", file_obs=[{"donor_id": "C146"}])
    std = data.standardize(adata, registry()["liao2020"], {"min_counts": 1}, name="liao2020")
    # nCoV is dropped before QC, so detected genes are counted without it
    human = truth[:, [j for j, g in enumerate(ids) if g != "nCoV"]].tocsr()
    expected = int((np.diff(human.indptr) >= 200).sum())
    assert std.n_obs == expected < 310
    assert std.uns["sclinbench"]["qc"] == ('{"min_cells": 0, "min_cells_per_label": 0, "min_counts": 1, '
                                           '"min_gene_counts": 0, "min_genes": 200}')


def test_several_10x_files_are_concatenated_with_per_file_obs():
    adata = data.read_raw([FIXTURE, FIXTURE], "10x_h5", file_obs=[{"donor_id": "C146"}, {"donor_id": "C999"}])
    assert adata.shape == (620, 2000)
    assert adata.obs_names.is_unique and adata.obs_names[0].startswith("C146_")
    assert (adata.obs["donor_id"] == "C999").sum() == 310
    assert sp.isspmatrix_csr(adata.X)


def test_matrix_market_directory(tmp_path):
    truth, ids, barcodes = fixture_truth()
    folder = tmp_path / "mtx"
    folder.mkdir()
    with gzip.open(folder / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, truth.T.tocoo().astype(np.int64))
    with gzip.open(folder / "features.tsv.gz", "wt") as fh:
        fh.writelines(f"{g}\t{g}_sym\tGene Expression\n" for g in ids)
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as fh:
        fh.writelines(f"{b}\n" for b in barcodes)
    adata = data.read_raw(folder, "mtx")
    assert adata.shape == (310, 2000) and adata.var_names[0] == ids[0]
    assert adata.var["gene_symbols"].iloc[0] == f"{ids[0]}_sym"
    assert (adata.X != truth).nnz == 0


def _cellxgene_like(path: Path) -> ad.AnnData:
    """Normalized X, raw counts in raw.X and layers/counts, Ensembl index + feature_name."""
    counts = np.array([[3, 0, 1, 0], [0, 2, 0, 5], [1, 1, 1, 1]], dtype=np.float32)
    var = pd.DataFrame({"feature_name": ["A1", "B2", "C3", "D4"]},
                       index=["ENSG00000000001", "ENSG00000000002", "ENSG00000000003", "ENSG00000000004"])
    obs = pd.DataFrame({"cell_type": ["T", "B", "T"], "donor_id": ["TSP1", "TSP17", "TSP21"]},
                       index=["a", "b", "c"])
    adata = ad.AnnData(X=sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)),
                       obs=obs, var=var)
    adata.raw = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.obsm["X_umap"] = np.arange(6, dtype=float).reshape(3, 2)
    adata.write_h5ad(path)
    return adata


def test_h5ad_counts_location(tmp_path):
    path = tmp_path / "ts.h5ad"
    src = _cellxgene_like(path)
    with pytest.raises(SclinbenchError) as err:
        data.read_raw(path, "h5ad", counts="X")
    assert str(path) in str(err.value) and "non-integer" in str(err.value) and "raw.X" in str(err.value)
    raw = data.read_raw(path, "h5ad", counts="raw.X")
    np.testing.assert_array_equal(raw.X.toarray(), src.raw.X.toarray())
    assert list(raw.var["feature_name"]) == ["A1", "B2", "C3", "D4"]
    assert raw.obsm["X_umap"].shape == (3, 2)
    layer = data.read_raw(path, "h5ad", counts="layers/counts")
    np.testing.assert_array_equal(layer.X.toarray(), src.raw.X.toarray())
    with pytest.raises(SclinbenchError, match="has no 'layers/spliced'.*X, raw.X, layers/counts"):
        data.read_raw(path, "h5ad", counts="layers/spliced")


def test_truncated_h5ad_gives_a_clear_error(tmp_path):
    path = tmp_path / "ts.h5ad"
    _cellxgene_like(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(SclinbenchError) as err:
        data.read_raw(path, "h5ad", counts="raw.X")
    message = str(err.value)
    assert str(path) in message and "delete it and re-run" in message and "\n" not in message


def test_truncated_h5ad_gives_one_line_in_the_block_reader(tmp_path):
    """Issue 24: the block reader (standardize_h5ad, evaluate in blocks) opened the file outside
    the unreadable-file handling: a truncated h5ad stopped with h5py's traceback."""
    path = tmp_path / "mine.h5ad"
    _cellxgene_like(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    entry = {"source": "local", "name": "mine", "counts": "raw.X", "organism": "Homo sapiens"}
    with pytest.raises(SclinbenchError) as err:
        data.standardize_h5ad(path, entry, {}, tmp_path / "out.h5ad", source=str(path), name="mine",
                              local=True)
    message = str(err.value)
    assert str(path) in message and "nothing was deleted" in message and "\n" not in message
    assert data.h5ad_shape(path) is None  # metadata readers answer "cannot tell" on such a file


def test_truncated_10x_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(FIXTURE.read_bytes()[:50_000])
    with pytest.raises(SclinbenchError, match="x.h5 as 10x_h5.*delete it and re-run"):
        data.read_raw(path, "10x_h5")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SclinbenchError, match="nope.h5ad does not exist"):
        data.read_raw(tmp_path / "nope.h5ad", "h5ad")


# ---------------------------------------------------------------------------- standardize


def test_missing_label_column_names_it_and_lists_existing_columns():
    adata = small_adata([[1, 2], [3, 4]], celltype=["T", "B"], sample=["d1", "d2"])
    entry = {"organism": "Homo sapiens", "gene_id": "symbol", "columns": {"cell_type": "cell_type_label"}}
    with pytest.raises(SclinbenchError) as err:
        data.standardize(adata, entry, {}, name="toy")
    message = str(err.value)
    assert "'cell_type_label'" in message and "columns.cell_type" in message
    assert "celltype, sample" in message


def test_qc_leaving_zero_cells_names_dataset_and_thresholds():
    adata = small_adata([[1, 2, 0], [3, 0, 0]], celltype=["T", "B"])
    entry = {"organism": "Homo sapiens", "gene_id": "symbol", "columns": {"cell_type": "celltype"}}
    with pytest.raises(SclinbenchError) as err:
        data.standardize(adata, entry, {"min_genes": 5}, name="toy")
    message = str(err.value)
    assert "'toy'" in message and "min_genes=5" in message and "no cells left" in message


def test_qc_thresholds_by_hand():
    counts = [
        [5, 0, 0, 1],   # c0 A: 6 counts, 2 genes       -> kept
        [0, 0, 0, 0],   # c1 A: empty                    -> removed
        [1, 1, 1, 0],   # c2 A: 3 counts < min_counts    -> removed
        [9, 0, 0, 0],   # c3 A: 1 gene < min_genes       -> removed
        [2, 2, 0, 0],   # c4 B: passes, but B has 1 cell -> removed by min_cells_per_label
        [0, 0, 3, 3],   # c5 A: 6 counts, 2 genes       -> kept
    ]
    adata = small_adata(counts, celltype=["A", "A", "A", "A", "B", "A"])
    entry = {"organism": "Mus musculus", "gene_id": "symbol", "columns": {"cell_type": "celltype"},
             "qc": {"min_cells_per_label": 2}}
    std = data.standardize(adata, entry, {"min_genes": 2, "min_counts": 4, "min_cells": 2}, name="toy")
    assert list(std.obs_names) == ["c0", "c5"]
    assert list(std.var_names) == ["G3"]  # G0 and G2 are in 1 kept cell each, G1 in none
    np.testing.assert_array_equal(std.X.toarray(), [[1], [3]])
    assert list(std.obs["cell_type"].cat.categories) == ["A"]
    assert '"min_cells_per_label": 2' in std.uns["sclinbench"]["qc"]


def test_min_gene_counts_drops_genes_by_total_count_over_the_kept_cells():
    """The paper's gene filter (total count >= 10): over the cells the cell filters keep."""
    counts = [
        [5, 1, 0, 9],   # c0: kept
        [4, 1, 2, 0],   # c1: kept
        [0, 0, 0, 30],  # c2: 1 gene < min_genes -> removed first, so G3's 30 counts do not count
        [0, 8, 1, 0],   # c3: kept
    ]
    adata = small_adata(counts, celltype=["A", "A", "B", "B"])
    entry = {"organism": "Mus musculus", "gene_id": "symbol", "columns": {"cell_type": "celltype"},
             "qc": {"min_gene_counts": 10}}
    std = data.standardize(adata, entry, {"min_genes": 2}, name="toy")
    # totals over c0, c1, c3: G0 9, G1 10, G2 3, G3 9 -> only G1 reaches 10
    assert list(std.obs_names) == ["c0", "c1", "c3"] and list(std.var_names) == ["G1"]
    assert '"min_gene_counts": 10' in std.uns["sclinbench"]["qc"]
    assert any("genes with < 10 counts in total" in step for step in json.loads(std.uns["sclinbench"]["qc_log"]))
    kept = data.standardize(adata, {**entry, "qc": {}}, {"min_genes": 2}, name="toy")
    assert kept.n_vars == 4                                  # off by default


def test_gene_ids_lose_version_and_duplicates_are_summed():
    genes = ["g_a", "g_b", "g_c"]
    adata = small_adata([[1, 2, 4], [0, 3, 5]], genes=genes)
    adata.var["ensembl"] = ["ENSG00000000011.4", "ENSG00000000011.7", "ENSMUSG00000000022.1"]
    adata.var["symbol"] = ["A", "A", np.nan]
    entry = {"organism": "Homo sapiens", "gene_id": "ensembl",
             "var_columns": {"gene_id": "ensembl", "gene_symbol": "symbol"}}
    std = data.standardize(adata, entry, {}, name="toy")
    assert list(std.var_names) == ["ENSG00000000011", "ENSMUSG00000000022"]
    np.testing.assert_array_equal(std.X.toarray(), [[3, 4], [3, 5]])
    assert list(std.var["gene_symbol"]) == ["A", "ENSMUSG00000000022"]  # missing symbol -> id
    assert sp.isspmatrix_csr(std.X) and std.X.dtype == np.float32

    by_symbol = data.standardize(adata, {**entry, "gene_id": "symbol"}, {}, name="toy")
    assert list(by_symbol.var_names) == ["A", "ENSMUSG00000000022"]


def test_missing_var_column_lists_existing_ones():
    adata = small_adata([[1, 2]])
    adata.var["feature_name"] = ["a", "b"]
    entry = {"organism": "Homo sapiens", "var_columns": {"gene_symbol": "gene_name"}}
    with pytest.raises(SclinbenchError, match="'gene_name'.*feature_name"):
        data.standardize(adata, entry, {}, name="toy")


def test_obs_filter_and_out_of_distribution_donors():
    adata = small_adata(np.ones((5, 2)), donor=["TSP1", "TSP15", "TSP17", "TSP30", "TSP16"],
                        disease=["normal", "normal", "normal", "normal", "flu"], ct=list("ABABA"))
    entry = {"organism": "Homo sapiens", "gene_id": "symbol",
             "columns": {"cell_type": "ct", "donor_id": "donor"},
             "obs_filter": {"disease": ["normal"]}, "ood_donors": ["TSP(1[7-9]|[2-9][0-9])"]}
    std = data.standardize(adata, entry, {}, name="ts")
    assert list(std.obs["donor_id"]) == ["TSP1", "TSP15", "TSP17", "TSP30"]
    assert list(std.obs["ood_donor"]) == [False, False, True, True]
    only = data.standardize(adata, {**entry, "ood_only": True}, {}, name="ts")
    assert list(only.obs["donor_id"]) == ["TSP17", "TSP30"]
    with pytest.raises(SclinbenchError, match="keeps no cell.*flu, normal"):
        data.standardize(adata, {**entry, "obs_filter": {"disease": ["covid"]}}, {}, name="ts")


def test_missing_organism_is_unknown_with_a_warning(caplog):
    with caplog.at_level("WARNING"):
        std = data.standardize(small_adata([[1]]), {"gene_id": "symbol"}, {}, name="toy")
    assert set(std.obs["organism"]) == {"unknown"}
    assert "no organism given" in caplog.text


def test_standardized_file_round_trips(tmp_path):
    from sclinbench.workflow.io import write_h5ad

    adata = data.read_raw(FIXTURE, "10x_h5", file_obs=[{"donor_id": "C146"}])
    std = data.standardize(adata, registry()["liao2020"], {"min_counts": 1}, source="fixture", name="liao2020")
    write_h5ad(std, tmp_path / "liao2020.h5ad")
    back = ad.read_h5ad(tmp_path / "liao2020.h5ad")
    assert back.shape == std.shape and sp.issparse(back.X)
    assert back.uns["sclinbench"]["sha256"] == std.uns["sclinbench"]["sha256"]
    assert set(back.obs["condition"]) == {"infected", "uninfected"}


# ---------------------------------------------------------------------------- registry


def test_every_registry_entry_validates_and_gets_defaults():
    from snakemake.utils import validate

    entries = registry()
    for name, entry in entries.items():
        filled = copy.deepcopy(entry)
        validate(filled, str(SCHEMA))
        assert filled["gene_id"] in ("auto", "ensembl", "symbol") and "qc" in filled, name
    assert sum(name.startswith("ts_") for name in entries) == 34
    collection = entries["spermatogenesis"]
    for organism, member in collection["members"].items():
        assert entries[member]["organism"] == organism
    assert collection["reference"] in collection["members"]
    assert entries["spermatogenesis"]["orthologs"] == {"source": "ensembl", "release": 112, "mode": "one2one"}
    urls = [f["url"] for f in entries["liao2020"]["files"]]
    assert urls[0].endswith("/GSM4339nnn/GSM4339772/suppl/GSM4339772_C144_filtered_feature_bc_matrix.h5")


def test_misspelled_registry_key_is_rejected_readably():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    entry = copy.deepcopy(registry()["pbmc68k"])
    entry["colums"] = entry.pop("columns")
    with pytest.raises(WorkflowError, match="'colums' was unexpected"):
        validate(entry, str(SCHEMA))
    nested = copy.deepcopy(registry()["liao2020"])
    nested["condition_from_feature"]["min_cout"] = 2
    with pytest.raises(WorkflowError, match="'min_cout' was unexpected"):
        validate(nested, str(SCHEMA))


# ---------------------------------------------------------------------------- unlabelled cells


def _separable(n_per_type=60, n_genes=60, seed=0, missing=0.15):
    """Three cell types with disjoint marker genes (a clean fixture: macro F1 1.0), some labels missing."""
    rng = np.random.default_rng(seed)
    types = np.repeat(["B", "NK", "T"], n_per_type)
    means = np.full((3, n_genes), 0.3)
    for k in range(3):
        means[k, k * 20:(k + 1) * 20] = 8.0
    X = rng.poisson(means[np.repeat(np.arange(3), n_per_type)]).astype(np.float32)
    labels = types.astype(object)
    lost = rng.random(len(types)) < missing
    labels[lost] = np.nan
    return small_adata(X, celltype=labels), int(lost.sum())


def _rankz_centroid_f1(std):
    from sclinbench.evaluate import metrics
    from sclinbench.evaluate.engine import evaluate
    from sclinbench.evaluate.splits import make_splits

    task = {"kind": "celltype", "split": "stratified", "n_folds": 5}
    pipelines = {"rankz_centroid": {"representation": {"name": "rankz"}, "model": {"name": "centroid"}}}
    splits = make_splits(std.obs, task, seed=0, dataset="toy")
    pred = evaluate(std, splits, pipelines, task, seed=0, dataset="toy")
    scores = metrics.score(pred, "celltype")
    return splits, pred, scores[scores.metric == "macro_f1"]["value"].mean()


def test_missing_labels_are_set_aside_never_a_class(caplog):
    """Issue 12: NaN labels became a class 'unknown' that was trained and scored (F1 1.0 -> 0.79)."""
    adata, n_lost = _separable()
    assert n_lost > 10
    entry = {"organism": "Homo sapiens", "gene_id": "symbol", "columns": {"cell_type": "celltype"}}
    with caplog.at_level("WARNING"):
        std = data.standardize(adata, entry, {}, name="toy")
    assert std.n_obs == adata.n_obs  # kept in the file ...
    assert int(std.obs["cell_type"].isna().sum()) == n_lost  # ... as unlabelled, not as a class
    assert "unknown" not in set(std.obs["cell_type"].dropna())
    assert json_load(std.uns["sclinbench"]["unlabelled"]) == {"cell_type": n_lost}
    assert f"{n_lost} of {adata.n_obs} cells have no cell_type" in caplog.text
    splits, pred, f1 = _rankz_centroid_f1(std)
    assert f1 == pytest.approx(1.0)
    assert set(pred["y_true"]) == {"B", "NK", "T"}
    assert splits.cell_id.nunique() == adata.n_obs - n_lost


def test_unlabelled_tokens_are_configurable():
    adata, n_lost = _separable(missing=0.0)
    adata.obs["celltype"] = adata.obs["celltype"].astype(object)
    adata.obs.iloc[:5, 0] = "Unknown"
    adata.obs.iloc[5:8, 0] = ""
    adata.obs.iloc[8:10, 0] = "doublet"
    entry = {"organism": "Homo sapiens", "gene_id": "symbol", "columns": {"cell_type": "celltype"}}
    std = data.standardize(adata, entry, {}, name="toy")  # default tokens: unknown (any case), empty
    assert int(std.obs["cell_type"].isna().sum()) == 8 and "doublet" in set(std.obs["cell_type"].dropna())
    std = data.standardize(adata, {**entry, "unlabelled": ["doublet", "unknown"]}, {}, name="toy")
    assert int(std.obs["cell_type"].isna().sum()) == 10
    std = data.standardize(adata, {**entry, "unlabelled": []}, {}, name="toy")  # only missing/empty
    assert int(std.obs["cell_type"].isna().sum()) == 3 and "Unknown" in set(std.obs["cell_type"].dropna())


def test_unlabelled_cells_survive_min_cells_per_label_and_round_trip(tmp_path):
    from sclinbench.workflow.io import write_h5ad

    adata, n_lost = _separable()
    entry = {"organism": "Homo sapiens", "gene_id": "symbol", "columns": {"cell_type": "celltype"},
             "qc": {"min_cells_per_label": n_lost + 1}}  # more than the unlabelled cells: they are no label
    std = data.standardize(adata, entry, {}, name="toy")
    assert std.n_obs == adata.n_obs
    write_h5ad(std, tmp_path / "toy.h5ad")
    back = ad.read_h5ad(tmp_path / "toy.h5ad")
    assert int(back.obs["cell_type"].isna().sum()) == n_lost


def json_load(text):
    import json

    return json.loads(text)


@pytest.mark.parametrize("where", [0.02, 0.3, 0.5, 0.8])
def test_an_h5ad_overwritten_mid_file_gives_one_line_in_both_readers(tmp_path, where):
    """Issue 24 (a corrupt h5ad reported to hang): 4 KiB of random bytes written into a real
    fixture at four places; the whole-file reader and the standardize rule's own call each stop
    with one line naming the file and write nothing."""
    path = tmp_path / "mine.h5ad"
    blob = bytearray((Path(__file__).parent / "data" / "cross_species" / "human.h5ad").read_bytes())
    start = int(len(blob) * where)
    blob[start:start + 4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(blob))
    with pytest.raises(SclinbenchError) as whole:
        data.read_raw(path, "h5ad")
    entry = {"source": "local", "files": [{"path": str(path)}], "organism": "Homo sapiens",
             "gene_id": "symbol", "columns": {"cell_type": "cell_type", "donor_id": "donor"}}
    with pytest.raises(SclinbenchError) as rule:  # the standardize rule's call (blocks, else whole)
        standardized_dataset("mine", entry, [str(path)], {}, out=str(tmp_path / "out.h5ad"))
    for err in (whole, rule):
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out.h5ad").exists()
